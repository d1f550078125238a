"""``POST /embeddings``: each input item is its own cache entry.

A batch reads all its keys in one ``get_many``; only the missing items go to the
provider, in one call, and the answer is put back together in the original order.
The stored value of an item is the JSON of its vector (or base64 string), so a hit
is assembled by concatenating bytes. ``usage`` reports the tokens of the provider
call actually made (0 when every item was cached).

:func:`embed_texts` is the same path for the gateway's own use (the semantic layer
embedding a prompt with a ``model_list`` model): same keys, same entries, same
single-flight, so a prompt embedded once is never sent to the provider again while
its entry lives, whichever of the two asked first.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from reprise.cache import AsyncCache
from reprise.core.controls import parse_controls
from reprise.core.entry import CacheEntry
from reprise.core.keys import embedding_item_hash, storage_key
from reprise.core.policy import CachePlan
from reprise.core.request import embedding_items, require_model, validate_embeddings
from reprise.errors import UpstreamError
from reprise.server.auth import OPEN, Principal
from reprise.server.errors import upstream_failure_reported_as
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import JSON_TYPE, Scope, Send, header, send_bytes
from reprise.server.upstream import Deployment, upstream_body

PATH = "/embeddings"
_NO_USAGE = b'{"prompt_tokens":0,"total_tokens":0}'


def assemble(model: str, vectors: list[bytes], usage: bytes) -> bytes:
    items = b",".join(
        b'{"object":"embedding","index":%d,"embedding":%s}' % (i, vector)
        for i, vector in enumerate(vectors)
    )
    return b'{"object":"list","data":[%s],"model":%s,"usage":%s}' % (
        items, orjson.dumps(model), usage
    )


async def handle_embeddings(gw: Gateway, scope: Scope, send: Send, body: dict[str, Any],
                            caller: Principal = OPEN) -> None:
    model = require_model(body)
    items, single = embedding_items(body)
    validate_embeddings(body)
    deployment = gw.pick(model)
    raw_cc = header(scope, b"cache-control")
    controls = parse_controls(body.get("cache"), raw_cc.decode("latin-1") if raw_cc else None)
    plan = gw.plan(controls, gw.cache_embeddings, caller)
    cache = gw.cache
    if cache is None or not plan.uses_cache:
        with upstream_failure_reported_as("bypass", None):
            outcome = await gw.upstream(deployment).post(deployment, PATH, upstream_body(body, deployment))
        await send_bytes(send, outcome.status, outcome.body, [JSON_TYPE, *cache_headers("bypass", None)])
        return
    keys = [storage_key(embedding_item_hash(body, item), plan.namespace) for item in items]
    with upstream_failure_reported_as("miss" if plan.read else "bypass", keys[0] if single else None):
        vectors, status, error = await _resolve(gw, cache, deployment, body, items, keys, plan)
    if error is not None:
        await send_bytes(send, status, error, [JSON_TYPE, *cache_headers("miss", None)])
        return
    found, usage = vectors
    hits = sum(1 for v in found if v[1])
    word = "hit" if hits == len(items) else ("miss" if plan.read else "bypass")
    headers = [JSON_TYPE, *cache_headers(word, keys[0] if single else None)]
    headers.append((b"x-reprise-cache-hits", f"{hits}/{len(items)}".encode()))
    await send_bytes(send, 200, assemble(model, [v[0] for v in found], usage), headers)


async def _resolve(gw: Gateway, cache: AsyncCache, deployment: Deployment, body: dict[str, Any],
                   items: list[Any], keys: list[str], plan: CachePlan
                   ) -> tuple[tuple[list[tuple[bytes, bool]], bytes], int, bytes | None]:
    """Vectors in input order (bytes, from_cache) and usage; or (status, error body)."""
    entries: list[CacheEntry | None] = (
        await cache.read_many(keys, plan.max_age) if plan.read else [None] * len(keys)
    )
    missing = [i for i, e in enumerate(entries) if e is None]
    cache.stats.hits += len(keys) - len(missing)
    if not missing:
        return ([(e.body, True) for e in entries if e is not None], _NO_USAGE), 200, None
    cache.stats.misses += len(missing)
    flight_key = "emb:" + hashlib.sha256("\n".join(keys[i] for i in missing).encode()).hexdigest()
    flight = cache.flights.current(flight_key) if plan.read else None
    if flight is not None and await cache.flights.follow(flight) is not None:
        cache.stats.coalesced += 1
        again = await cache.read_many([keys[i] for i in missing], plan.max_age)
        for i, entry in zip(missing, again, strict=True):
            entries[i] = entry
        missing = [i for i, e in enumerate(entries) if e is None]
        if not missing:
            return ([(e.body, True) for e in entries if e is not None], _NO_USAGE), 200, None
    with cache.flights.lead(flight_key) as leading:
        request = upstream_body(body, deployment)
        request["input"] = [items[i] for i in missing]
        cache.stats.upstream_calls += 1
        outcome = await gw.upstream(deployment).post(deployment, PATH, request)
        if not outcome.ok:
            return ([], b""), outcome.status, outcome.body
        fresh, usage = _parse_vectors(outcome.body, len(missing))
        if plan.store:
            meta = {"kind": "embedding", "model": body.get("model")}
            await cache.write_many(
                [(keys[i], cache.make_entry(v, plan.ttl, meta)) for i, v in zip(missing, fresh, strict=True)]
            )
        leading.resolve(outcome)
    found: list[tuple[bytes, bool]] = []
    fresh_by_index = dict(zip(missing, fresh, strict=True))
    for i, entry in enumerate(entries):
        found.append((entry.body, True) if entry is not None else (fresh_by_index[i], False))
    return (found, usage), 200, None


async def embed_texts(gw: Gateway, model: str, texts: list[str], plan: CachePlan) -> list[bytes]:
    """The JSON vectors of ``texts`` from ``model``, as ``POST /embeddings`` would get them.

    Cached under ``plan`` (its namespace, ttl and ``store``) when the cache covers
    embeddings. An upstream error status, a network failure or a malformed answer
    raises :class:`UpstreamError`.
    """
    body: dict[str, Any] = {"model": model, "input": texts}
    deployment = gw.pick(model)
    cache = gw.cache
    if cache is None or not gw.cache_embeddings or not plan.uses_cache:
        outcome = await gw.upstream(deployment).post(deployment, PATH, upstream_body(body, deployment))
        if not outcome.ok:
            raise UpstreamError(f"embedding model {model!r} answered HTTP {outcome.status}", outcome.status)
        return _parse_vectors(outcome.body, len(texts))[0]
    keys = [storage_key(embedding_item_hash(body, text), plan.namespace) for text in texts]
    (found, _), status, error = await _resolve(gw, cache, deployment, body, list(texts), keys, plan)
    if error is not None:
        raise UpstreamError(f"embedding model {model!r} answered HTTP {status}", status)
    return [vector for vector, _ in found]


def _parse_vectors(raw: bytes, expected: int) -> tuple[list[bytes], bytes]:
    try:
        reply = orjson.loads(raw)
        data = sorted(reply["data"], key=lambda d: d["index"])
        vectors = [orjson.dumps(d["embedding"]) for d in data]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UpstreamError("upstream sent a malformed embeddings response") from exc
    if len(vectors) != expected:
        raise UpstreamError(f"upstream returned {len(vectors)} embeddings for {expected} inputs")
    return vectors, orjson.dumps(reply.get("usage") or {"prompt_tokens": 0, "total_tokens": 0})
