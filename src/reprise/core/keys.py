"""Exact cache keys: sha256 over the canonical form of the parameters that decide an answer.

The rule is *what is sent to the provider is hashed, except what cannot change the
answer*: a parameter we have never heard of (a new OpenAI option, a vendor extension)
is forwarded and hashed, so it can only make keys more specific, never make two
different questions share an answer. Fields that steer the gateway or carry credentials
(:data:`GATEWAY_ONLY_PARAMS`) are neither hashed nor forwarded (:func:`provider_params`),
so nothing a client sends can reach the provider without being in the key; only the
framing fields of :data:`UNKEYED_PARAMS` are forwarded unhashed. Canonical form: top-level ``null`` values dropped (the
API treats them as absent), whole-number floats written as floats for the sampling
parameters (``temperature: 1`` and ``1.0`` are one key), the top-level fields in sorted order,
``messages`` with their keys sorted at every depth, every other value in the client's order, no
whitespace. Order inside values is kept because it can change the answer: a JSON schema's
property order is the order structured outputs (OpenAI, vLLM's guided decoding, Gemini's
``propertyOrdering``) write the fields in, so ``{reasoning, answer}`` and ``{answer,
reasoning}`` are two questions. The kind of call (``chat``/``embedding``) is part of
the hashed text so the two can never collide.

LiteLLM's equivalent: ``litellm.caching.Cache.get_cache_key``
(https://docs.litellm.ai/docs/proxy/caching); its keys are also 64 hex sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

#: Body fields that steer the gateway or carry credentials: never sent to the provider and
#: never hashed. A client must not be able to choose where or how the provider is called
#: (``api_base``, keys, headers) nor the gateway's own bookkeeping; LiteLLM's client-side
#: call options are listed so a LiteLLM SDK user's requests stay clean.
GATEWAY_ONLY_PARAMS: frozenset[str] = frozenset(
    {
        "cache",  # Reprise/LiteLLM per-request cache controls
        "caching",  # LiteLLM's per-call switch
        "metadata",  # LiteLLM bookkeeping (tags, trace ids)
        "mock_response",
        "api_key",
        "api_base",
        "base_url",
        "api_version",
        "api_type",
        "organization",
        "azure_ad_token",
        "extra_headers",
        "extra_body",
        "extra_query",
        "timeout",
        "request_timeout",
        "stream_timeout",
        "max_retries",
        "num_retries",
        "fallbacks",
        "context_window_fallbacks",
        "tags",
        "secret_fields",
        "user_api_key",
        "proxy_server_request",
        "litellm_logging_obj",
        "litellm_call_id",
        "litellm_metadata",
        "litellm_trace_id",
        "custom_llm_provider",
        "input_cost_per_token",
        "output_cost_per_token",
        "no-log",
    }
)

#: Body fields sent to the provider that cannot change the answer, so not hashed: the
#: framing of one answer (a streamed and a plain request share an entry) and the end-user
#: id OpenAI uses for abuse monitoring. Of ``stream_options`` only ``include_usage`` is left
#: out (:func:`_keyed_stream_options`).
UNKEYED_PARAMS: frozenset[str] = frozenset({"stream", "stream_options", "user"})

#: Everything not hashed into a key. Every other field, known or not, is both forwarded and hashed.
IGNORED_PARAMS: frozenset[str] = GATEWAY_ONLY_PARAMS | UNKEYED_PARAMS

#: Parameters whose integral values are normalised to float before hashing.
FLOAT_PARAMS: frozenset[str] = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"}
)

def canonical_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``body`` that decides the answer, normalised (top-level fields in sorted
    order; :func:`hash_params` writes it canonically)."""
    params: dict[str, Any] = {}
    for name in sorted(body):
        value = body[name]
        if name == "stream_options" and value is not None:
            value = _keyed_stream_options(value)
            if value is not None:
                params[name] = value
            continue
        if value is None or name in IGNORED_PARAMS:
            continue
        if name in FLOAT_PARAMS and type(value) is int:
            value = float(value)
        params[name] = value
    return params


def _keyed_stream_options(options: Any) -> Any:
    """What of ``stream_options`` can change the answer: all but ``include_usage``.

    ``include_usage`` is the gateway's own business (it asks for usage whenever it stores and
    sends the usage chunk only to a client that asked), but the object is forwarded, so any
    other member is hashed: ``include_obfuscation: false`` (OpenAI's per-chunk padding off) must
    not be served a recorded stream that carries it, nor may an unknown vendor option pass
    unkeyed. ``include_obfuscation: true`` is OpenAI's default, so it is the same as absent.
    """
    if not isinstance(options, dict):
        return options  # not an object: refused or passed on as it is, and hashed either way
    kept = {name: value for name, value in options.items()
            if value is not None and name != "include_usage"
            and not (name == "include_obfuscation" and value is True)}
    return kept or None


def provider_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """What of ``body`` may be sent to the provider: all but :data:`GATEWAY_ONLY_PARAMS`."""
    return {name: value for name, value in body.items() if name not in GATEWAY_ONLY_PARAMS}


def hash_params(kind: str, params: Mapping[str, Any]) -> str:
    """64 hex chars of sha256 over ``kind`` and the canonical JSON of ``params`` (:func:`_params_json`)."""
    digest = hashlib.sha256(kind.encode())
    digest.update(b"\0")
    digest.update(_params_json(params))
    return digest.hexdigest()


def _params_json(params: Mapping[str, Any]) -> bytes:
    """Top-level fields sorted, ``messages`` with their keys sorted at every depth (a message holds
    no schema: role/content/parts/tool calls, whose key order never matters), the rest as sent."""
    ordered = dict(sorted(params.items()))
    messages = ordered.get("messages")
    try:
        if type(messages) is list:
            ordered["messages"] = orjson.Fragment(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS))
        return orjson.dumps(ordered)
    except TypeError:  # integers beyond 64 bits (possible from library callers)
        if type(messages) is list:
            ordered["messages"] = json.loads(json.dumps(messages, sort_keys=True))
        return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


def chat_key_hash(body: Mapping[str, Any]) -> str:
    """The exact key hash of a chat completion request body."""
    return hash_params("chat", canonical_params(body))


def embedding_item_hash(body: Mapping[str, Any], item: Any) -> str:
    """The key hash of one input item of an embeddings request.

    Every other parameter (model, dimensions, encoding_format, ...) is hashed with
    the single item, so each item of a batch is cached on its own.
    """
    return embedding_item_hashes(body, [item])[0]


def embedding_item_hashes(body: Mapping[str, Any], items: Sequence[Any]) -> list[str]:
    """:func:`embedding_item_hash` of every item, the other parameters written and hashed once.

    Once, not per item: hashing the whole body again for each of 2,048 items made one 7.5 MB
    request (a large unknown field beside the inputs) cost 24 s of event loop.
    """
    params = canonical_params(body)
    params.pop("input", None)
    prefix = hashlib.sha256(b"embedding\0")
    prefix.update(_params_json(params))
    prefix.update(b"\0")
    hashes = []
    for item in items:
        digest = prefix.copy()
        digest.update(_canonical_json(item))
        hashes.append(digest.hexdigest())
    return hashes


def _canonical_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits (possible from library callers)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def storage_key(key_hash: str, namespace: str | None) -> str:
    """``{namespace}:{hash}`` when namespaced, else the bare hash (as LiteLLM stores them)."""
    return f"{namespace}:{key_hash}" if namespace else key_hash
