"""``type: redis-semantic``: answers and prompt vectors in one Redis with the search module.

Answers are exact entries of the ordinary Redis backend (:class:`RedisBackend`, same
keys, same ``SET PX`` expiry), so exact hits are unchanged. Prompt vectors live in the
same Redis, through the same connection pool, as HASH documents indexed by RediSearch
(Redis Stack, Redis 8, or Valkey with ``redisearch.so`` loaded):

* index ``{redis_semantic_cache_index_name}`` (LiteLLM's default name,
  ``litellm_semantic_cache_index``), ``FT.CREATE ... ON HASH PREFIX 1 {index}:``;
* one document per remembered prompt, ``{index}:{scope}:{exact key}``, with the fields
  ``scope`` (case-sensitive TAG, the hard pre-filter of every search; see
  :func:`scope_tag`), ``namespace`` (TAG), ``key``
  (the exact key: ``GET`` it for the answer, stored once), ``prompt`` (the text),
  ``expires_at`` (epoch seconds, empty for none) and ``vector`` (FLOAT32 bytes; HNSW,
  cosine). ``redis-cli HGETALL <doc>`` and ``FT.INFO <index>`` read them.
* a document expires with its answer (``PEXPIREAT`` from the entry's expiry); the exact
  entry still decides freshness, so an earlier expiry or a delete is simply a miss.

A search is one ``FT.SEARCH "(@scope:{<escaped>})=>[KNN k @vector $vec AS dist]"``
(DIALECT 2, cosine distance turned back into similarity). Plain redis-py
``execute_command`` is used rather than RedisVL: four commands, no extra dependency, and
the commands are exactly what an operator types in ``redis-cli``. Both RESP2 and RESP3
replies are read.

The index is created on first use (an existing one is reused) and again when Redis
comes back without it (a restart without persistence). Every failure becomes
:class:`BackendUnavailable` or :class:`BackendTimeout`; the semantic driver fails open.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from redis.exceptions import ResponseError

from reprise.backends.base import Backend, namespace_of
from reprise.backends.redis import _FAILURES, RedisBackend, _translate
from reprise.backends.redis_conn import resolve_target
from reprise.backends.registry import VectorStoreMaker
from reprise.backends.tiered import TieredBackend
from reprise.backends.vector import Vector, VectorHit, VectorRecord, VectorStore
from reprise.errors import BackendError, BackendUnavailable

if TYPE_CHECKING:
    from reprise.config.models import RedisSemanticCacheParams

_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")
_PLAIN_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
_MISSING_INDEX = ("no such index", "unknown index name")
_RETURN = ("key", "prompt", "dist")
EF_RUNTIME = 100
"""HNSW candidates kept per search; RediSearch's default (10) measured poor recall at 100k."""


def escape_tag(value: str) -> str:
    """A TAG query value with every punctuation and space escaped (RediSearch's rule)."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def scope_tag(scope: str) -> str:
    """The TAG value stored for ``scope``: itself when plain (Reprise's scopes are sha256 hex),
    else ``~`` + its sha256, since a TAG value is split at commas and trimmed of spaces."""
    if _PLAIN_TAG.fullmatch(scope):
        return scope
    return "~" + hashlib.sha256(scope.encode()).hexdigest()


def search_args(index: str, scope: str, vector: bytes, k: int, ef_runtime: int = EF_RUNTIME) -> list[Any]:
    """The ``FT.SEARCH`` arguments for up to ``k`` nearest documents of ``scope``, nearest first."""
    knn = f"KNN {k} @vector $vec EF_RUNTIME {ef_runtime} AS dist"
    query = f"(@scope:{{{escape_tag(scope_tag(scope))}}})=>[{knn}]"
    return ["FT.SEARCH", index, query, "PARAMS", "2", "vec", vector, "SORTBY", "dist",
            "LIMIT", "0", str(k), "RETURN", str(len(_RETURN)), *_RETURN, "DIALECT", "2"]


def create_args(index: str, dim: int) -> list[Any]:
    """The ``FT.CREATE`` arguments of Reprise's schema (see the module docstring)."""
    return ["FT.CREATE", index, "ON", "HASH", "PREFIX", "1", f"{index}:", "SCHEMA",
            "scope", "TAG", "CASESENSITIVE", "namespace", "TAG", "CASESENSITIVE",
            "vector", "VECTOR", "HNSW", "6", "TYPE", "FLOAT32", "DIM", str(dim), "DISTANCE_METRIC", "COSINE"]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_search(reply: Any) -> list[dict[str, str]]:
    """The returned fields of each document of an ``FT.SEARCH`` reply, RESP2 or RESP3."""
    if isinstance(reply, Mapping):  # RESP3: {"results": [{"extra_attributes": {...}}, ...]}
        results = reply.get(b"results", reply.get("results", []))
        docs = []
        for doc in results:
            fields = doc.get(b"extra_attributes", doc.get("extra_attributes", {}))
            docs.append({_text(k): _text(v) for k, v in fields.items()})
        return docs
    docs = []  # RESP2: [total, id, [field, value, ...], id, [...], ...]
    for flat in reply[2::2]:
        docs.append({_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat) - 1, 2)})
    return docs


def _fail(exc: BaseException, index: str) -> BackendError:
    if isinstance(exc, ResponseError):
        text = str(exc)
        if "unknown command" in text.lower():
            text = f"{text} (this Redis has no search module: use Redis Stack, Redis 8 or load redisearch.so)"
        else:
            text = (f"{text} (index {index!r}: drop it if it was made with another schema, or set "
                    "redis_semantic_cache_index_name)")
        return BackendUnavailable(f"redis-semantic: {text}", "redis-semantic")
    return _translate(exc)


class RedisVectorStore:
    """The :class:`VectorStore` half over a :class:`RedisBackend`'s client (one pool)."""

    name = "redis-vectors"

    def __init__(self, backend: RedisBackend, index: str, dim: int, *, owns_backend: bool = False,
                 ef_runtime: int = EF_RUNTIME) -> None:
        self.backend = backend
        self.ef_runtime = ef_runtime
        self.index = index
        self.prefix = f"{index}:"
        self.dim = dim
        self.owns_backend = owns_backend
        self._ready = False
        self._lock = asyncio.Lock()

    def doc_id(self, scope: str, key: str) -> str:
        return f"{self.prefix}{scope}:{key}"

    async def _client(self) -> Any:
        client = self.backend.connection()
        if not self._ready:
            async with self._lock:
                if not self._ready:
                    await self._create_index(client)
        return client

    async def _create_index(self, client: Any) -> None:
        try:
            await client.execute_command(*create_args(self.index, self.dim))
        except ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise _fail(exc, self.index) from exc
        except _FAILURES as exc:
            raise _translate(exc) from exc
        self._ready = True

    async def _run(self, *args: Any, again: bool = True) -> Any:
        """One command. A missing index (Redis restarted empty) is created and the command
        run once more; after a lost connection the next call checks the index first."""
        client = await self._client()
        try:
            return await client.execute_command(*args)
        except ResponseError as exc:
            if not any(text in str(exc).lower() for text in _MISSING_INDEX):
                raise _fail(exc, self.index) from exc
            self._ready = False
            if not again:
                raise _fail(exc, self.index) from exc
        except _FAILURES as exc:
            self._ready = False
            raise _translate(exc) from exc
        return await self._run(*args, again=False)

    def _blob(self, vector: Vector) -> bytes:
        row = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if row.shape[0] != self.dim:
            raise BackendUnavailable(f"vector of {row.shape[0]} dimensions, index has {self.dim}", self.name)
        return row.tobytes()

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        reply = await self._run(*search_args(self.index, scope, self._blob(vector), k, self.ef_runtime))
        hits = []
        for doc in parse_search(reply):
            if "key" not in doc or "dist" not in doc:
                continue  # a hash under the prefix that Reprise did not write
            score = min(1.0, 1.0 - float(doc["dist"]))
            if score >= threshold:
                hits.append(VectorHit(doc["key"], doc.get("prompt", ""), score))
        return hits

    async def upsert(self, record: VectorRecord) -> None:
        doc = self.doc_id(record.scope, record.key)
        fields = {
            "scope": scope_tag(record.scope),
            "namespace": namespace_of(record.key) or "",
            "key": record.key,
            "prompt": record.prompt,
            "expires_at": "" if record.expires_at is None else f"{record.expires_at:.3f}",
            "vector": self._blob(record.vector),
        }
        client = await self._client()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(doc, mapping=fields)
                if record.expires_at is None:
                    pipe.persist(doc)
                else:
                    pipe.pexpireat(doc, int(record.expires_at * 1000))
                await pipe.execute()
        except _FAILURES as exc:
            self._ready = False
            raise _fail(exc, self.index) from exc

    async def delete(self, scope: str, key: str) -> bool:
        return bool(await self._run("UNLINK", self.doc_id(scope, key)))

    async def aclose(self) -> None:
        """Release the pool only when this store made its own backend; else the backend owns it."""
        if self.owns_backend:
            await self.backend.aclose()


def _redis_backend(backend: Backend) -> RedisBackend | None:
    """The :class:`RedisBackend` itself, or the shared tier behind its local tier."""
    if isinstance(backend, RedisBackend):
        return backend
    if isinstance(backend, TieredBackend) and isinstance(backend.back, RedisBackend):
        return backend.back
    return None


def _vector_store(params: RedisSemanticCacheParams, dim: int, backend: Backend) -> VectorStore:
    """The vector index over the exact store's pool when it is Redis, else over a pool of its own."""
    index = params.redis_semantic_cache_index_name
    redis = _redis_backend(backend)
    if redis is not None:
        return RedisVectorStore(redis, index, dim)
    own = RedisBackend(resolve_target(params, os.environ), hidden_prefixes=(f"{index}:",))
    return RedisVectorStore(own, index, dim, owns_backend=True)


class RedisSemanticBackend:
    """Registry entry: the exact half is :class:`RedisBackend`; the vectors share its client."""

    vector_store: ClassVar[VectorStoreMaker[RedisSemanticCacheParams]] = _vector_store

    @classmethod
    def from_params(cls, params: RedisSemanticCacheParams) -> Backend:
        hidden = (f"{params.redis_semantic_cache_index_name}:",)
        return RedisBackend.from_params(params, hidden_prefixes=hidden)
