"""``POST /embeddings``: each input item is its own cache entry; the driver does the rest.

The driver (:meth:`~reprise.cache.AsyncCache.get_or_produce_many`) reads all the
batch's keys at once, shares items other requests are producing, and asks this module
to produce the rest in one provider call; the answer is put back together in the
original order. An item's entry keeps every field the provider sent: the item's own, and
a copy of its answer's top-level fields and ``usage``; what an answer put together from
several provider answers carries is decided in :mod:`reprise.core.embedding_answer`. A hit
is assembled by concatenating the stored items' bytes. ``usage`` reports the tokens of the
provider call this request made (0 when every item came from the cache or another
request's call).

:func:`embed_texts` is the same path for the gateway's own use (the semantic layer
embedding a prompt with a ``model_list`` model): same keys, same entries, same
single-flight, so a prompt embedded once is never sent to the provider again while
its entry lives, whichever of the two asked first.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from reprise.cache import AsyncCache, BatchAnswer
from reprise.core.controls import parse_controls
from reprise.core.embedding_answer import (
    MAX_ANSWER_FIELDS_BYTES,
    NO_USAGE,
    answer_fields,
    assemble,
    item_value,
    stored_vector,
)
from reprise.core.keys import embedding_item_hashes, storage_key
from reprise.core.policy import BYPASS, CachePlan
from reprise.core.request import embedding_items, require_model, validate_embeddings
from reprise.errors import UpstreamError
from reprise.observability.observer import RequestRecord, unobserved
from reprise.outcome import BatchOutcome
from reprise.server.auth import OPEN, Principal
from reprise.server.errors import upstream_failure_reported_as
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import JSON_TYPE, Scope, Send, header_text, send_bytes
from reprise.server.upstream import Deployment, upstream_body

PATH = "/embeddings"


async def handle_embeddings(gw: Gateway, scope: Scope, send: Send, body: dict[str, Any],
                            caller: Principal = OPEN, record: RequestRecord | None = None) -> None:
    record = record or unobserved()
    model = require_model(body)
    items, single = embedding_items(body)
    validate_embeddings(body)
    deployment = gw.pick(model)
    controls = parse_controls(body.get("cache"), header_text(scope, b"cache-control"))
    plan = gw.plan(controls, gw.cache_embeddings, caller)
    keys = [storage_key(h, plan.namespace) for h in embedding_item_hashes(body, items)]
    shown_key = keys[0] if single and plan.uses_cache else None
    with upstream_failure_reported_as("miss" if plan.read else "bypass", shown_key):
        answer = await _resolve(gw, gw.cache or gw.forwarder, deployment, body, items, keys, plan)
    record.report(answer.cache_status, shown_key)
    headers = [JSON_TYPE, *cache_headers(answer.cache_status, shown_key)]
    if answer.failure is not None:
        await send_bytes(send, answer.failure.status, answer.failure.body, headers)
        return
    if plan.uses_cache:
        headers.append((b"x-reprise-cache-hits", f"{answer.hits}/{len(items)}".encode()))
    await send_bytes(send, 200, assemble(model, answer.values, answer.usage), headers)


async def _resolve(gw: Gateway, cache: AsyncCache, deployment: Deployment, body: dict[str, Any],
                   items: list[Any], keys: list[str], plan: CachePlan) -> BatchAnswer:
    """The batch through the driver; the provider is asked only for the items it hands back."""
    meta = {"kind": "embedding", "model": body.get("model")}

    async def produce(positions: list[int]) -> BatchOutcome:
        request = upstream_body(body, deployment)
        request["input"] = [items[i] for i in positions] if len(positions) != len(items) else body["input"]
        outcome = await gw.upstream(deployment).post(deployment, PATH, request)
        if not outcome.ok:
            return BatchOutcome(outcome.status, outcome.body)
        values, usage, fields_size = _parse_items(deployment, outcome.body, len(positions),
                                                  body.get("encoding_format") == "base64")
        return BatchOutcome(outcome.status, values=tuple(values), usage=usage, meta=meta,
                            storable=fields_size <= MAX_ANSWER_FIELDS_BYTES)

    return await cache.get_or_produce_many(keys, plan, produce)


async def embed_texts(gw: Gateway, model: str, texts: list[str], plan: CachePlan) -> list[bytes]:
    """The JSON vectors of ``texts`` from ``model``, as ``POST /embeddings`` would get them.

    Cached under ``plan`` (its namespace, ttl and ``store``) when the cache covers
    embeddings. An upstream error status, a network failure or a malformed answer
    raises :class:`UpstreamError`.
    """
    body: dict[str, Any] = {"model": model, "input": texts}
    deployment = gw.pick(model)
    if gw.cache is None or not gw.cache_embeddings:
        plan = BYPASS
    keys = [storage_key(h, plan.namespace) for h in embedding_item_hashes(body, texts)]
    answer = await _resolve(gw, gw.cache or gw.forwarder, deployment, body, list(texts), keys, plan)
    if answer.failure is not None:
        raise UpstreamError(f"embedding model {model!r} answered HTTP {answer.failure.status}",
                            answer.failure.status)
    return [stored_vector(value) for value in answer.values]


def _parse_items(deployment: Deployment, raw: bytes, expected: int,
                 base64_asked: bool = False) -> tuple[list[bytes], bytes, int]:
    """The provider's items as stored values (:func:`item_value`) in input order, its usage,
    and the size of its top-level fields; UpstreamError (502) for an answer that is not a
    valid one, since each item is stored as the answer to its own input.

    Items are placed by ``index``, which must be each of 0..n-1 once: an item placed by
    position instead would store one input's vector under another's key.
    """
    try:
        reply = orjson.loads(raw)
        data = reply["data"]
        if not isinstance(data, list) or reply.get("error") is not None:
            raise TypeError("no data")
        indexes = [d["index"] for d in data]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UpstreamError(f"model {deployment.model_name!r}: the provider's answer is not "
                            "a valid embeddings response") from exc
    if len(data) != expected:
        raise UpstreamError(f"model {deployment.model_name!r}: the provider returned {len(data)} "
                            f"embeddings for {expected} inputs")
    if any(type(i) is not int for i in indexes) or sorted(indexes) != list(range(expected)):
        raise UpstreamError(f"model {deployment.model_name!r}: the provider's embeddings are not indexed "
                            f"0..{expected - 1}, each once")
    fields = answer_fields(reply)
    values = [b""] * expected
    for index, item in zip(indexes, data, strict=True):
        vector = _vector(item.get("embedding"), base64_asked)
        if vector is None:
            raise UpstreamError(f"model {deployment.model_name!r}: the provider's embedding {index} is not "
                                + ("a base64 string or " if base64_asked else "") + "a list of numbers")
        values[index] = item_value(fields, item, vector)
    usage = reply.get("usage")
    return values, orjson.dumps(usage) if usage else NO_USAGE, len(fields)


_NUMBER_BYTES = b"0123456789-+.eE,"


def _vector(embedding: Any, base64_asked: bool) -> bytes | None:
    """The JSON of a valid embedding, or None.

    A list is checked on its JSON: once the bytes of numbers and commas are deleted, a
    non-empty list of numbers leaves ``[]`` and anything else (true, null, a string, a
    nested list or object) leaves more. Done in C on bytes the entry needs anyway, it
    costs a quarter of a Python loop over a 1536-float vector.
    """
    if isinstance(embedding, list):
        dumped = orjson.dumps(embedding)
        return dumped if len(dumped) > 2 and dumped.translate(None, _NUMBER_BYTES) == b"[]" else None
    if base64_asked and isinstance(embedding, str):
        try:
            packed = base64.b64decode(embedding, validate=True)
        except binascii.Error:
            return None
        return orjson.dumps(embedding) if packed and len(packed) % 4 == 0 else None  # float32s
    return None
