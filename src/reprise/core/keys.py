"""Exact cache keys: sha256 over the canonical form of the parameters that decide an answer.

The rule is *exclude what cannot change the answer; include everything else*, so a
parameter we have never heard of (a new OpenAI option, a vendor extension) can only
make keys more specific, never make two different questions share an answer.

Excluded (they change transport, bookkeeping or caching, not the model's output):
see :data:`IGNORED_PARAMS`. Canonical form: top-level ``null`` values dropped (the
API treats them as absent), whole-number floats written as floats for the sampling
parameters (``temperature: 1`` and ``1.0`` are one key), JSON with sorted keys at
every depth and no whitespace. The kind of call (``chat``/``embedding``) is part of
the hashed text so the two can never collide.

LiteLLM's equivalent: ``litellm.caching.Cache.get_cache_key``
(https://docs.litellm.ai/docs/proxy/caching); its keys are also 64 hex sha256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson

#: Request fields that never change the model's answer and so are not hashed.
IGNORED_PARAMS: frozenset[str] = frozenset(
    {
        "cache",  # Reprise/LiteLLM per-request cache controls
        "stream",  # same answer, different framing: both share one entry
        "stream_options",  # only asks for a usage chunk
        "user",  # end-user id for abuse tracking
        "metadata",  # LiteLLM/OpenAI bookkeeping
        "store",  # OpenAI: keep for distillation/evals
        "service_tier",  # latency class, same model output
        "timeout",
        "request_timeout",
        "stream_timeout",
        "max_retries",
        "api_key",
        "api_base",
        "base_url",
        "extra_headers",
        "caching",  # LiteLLM's per-call switch
        "mock_response",
        "num_retries",
        "litellm_logging_obj",
        "proxy_server_request",
    }
)

#: Parameters whose integral values are normalised to float before hashing.
FLOAT_PARAMS: frozenset[str] = frozenset(
    {"temperature", "top_p", "presence_penalty", "frequency_penalty", "repetition_penalty"}
)

_SORT = orjson.OPT_SORT_KEYS


def canonical_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``body`` that decides the answer, normalised."""
    params: dict[str, Any] = {}
    for name, value in body.items():
        if value is None or name in IGNORED_PARAMS:
            continue
        if name in FLOAT_PARAMS and type(value) is int:
            value = float(value)
        params[name] = value
    return params


def hash_params(kind: str, params: Mapping[str, Any]) -> str:
    """64 hex chars of sha256 over ``kind`` and the canonical JSON of ``params``."""
    digest = hashlib.sha256(kind.encode())
    digest.update(b"\0")
    try:
        text = orjson.dumps(params, option=_SORT)
    except TypeError:  # integers beyond 64 bits (possible from library callers)
        text = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest.update(text)
    return digest.hexdigest()


def chat_key_hash(body: Mapping[str, Any]) -> str:
    """The exact key hash of a chat completion request body."""
    return hash_params("chat", canonical_params(body))


def embedding_item_hash(body: Mapping[str, Any], item: Any) -> str:
    """The key hash of one input item of an embeddings request.

    Every other parameter (model, dimensions, encoding_format, ...) is hashed with
    the single item, so each item of a batch is cached on its own.
    """
    params = canonical_params(body)
    params["input"] = item
    return hash_params("embedding", params)


def storage_key(key_hash: str, namespace: str | None) -> str:
    """``{namespace}:{hash}`` when namespaced, else the bare hash (as LiteLLM stores them)."""
    return f"{namespace}:{key_hash}" if namespace else key_hash
