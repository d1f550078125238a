"""redis-semantic against a real Valkey + RediSearch: the vector half, the shared exact half, outages."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from reprise.backends.base import Backend
from reprise.backends.redis import RedisBackend
from reprise.backends.redis_vector import RedisSemanticBackend, RedisVectorStore, escape_tag
from reprise.backends.registry import load_backend_class
from reprise.backends.vector import VectorRecord
from reprise.config.models import RedisSemanticCacheParams
from reprise.errors import BackendError
from tests.support.redis_search import SearchRedis
from tests.support.redis_servers import RedisServer

_INDEXES = itertools.count()


def unit(*values: float) -> np.ndarray:
    v = np.zeros(4, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def params(port: int, index: str | None = None, **extra: Any) -> RedisSemanticCacheParams:
    return RedisSemanticCacheParams(type="redis-semantic", host="127.0.0.1", port=port,
                                    redis_semantic_cache_index_name=index or f"reprise_test_{next(_INDEXES)}",
                                    **extra)


Stores = tuple[Backend, RedisVectorStore]


async def open_stores(port: int, **extra: Any) -> Stores:
    p = params(port, **extra)
    exact = RedisSemanticBackend.from_params(p)
    vectors = RedisSemanticBackend.vector_store(p, 4, exact)
    assert isinstance(vectors, RedisVectorStore)
    return exact, vectors


@pytest.fixture()
async def stores(search_redis: SearchRedis) -> AsyncIterator[Stores]:
    exact, vectors = await open_stores(search_redis.port)
    yield exact, vectors
    await vectors.aclose()
    await exact.aclose()


async def test_upsert_search_delete_in_knn_order(stores: Stores) -> None:
    _, vectors = stores
    await vectors.upsert(VectorRecord("s1", "k1", "one", unit(1, 0)))
    await vectors.upsert(VectorRecord("s1", "k2", "two", unit(1, 1)))
    await vectors.upsert(VectorRecord("s1", "k3", "three", unit(1, 0.3)))
    hits = await vectors.search("s1", unit(1, 0.1), k=5, threshold=0.5)
    assert [h.key for h in hits] == ["k1", "k3", "k2"] and hits[0].prompt == "one"
    assert hits[0].score > hits[1].score > hits[2].score and hits[0].score <= 1.0
    assert [h.key for h in await vectors.search("s1", unit(1, 0.1), k=2, threshold=0.5)] == ["k1", "k3"]
    await vectors.upsert(VectorRecord("s1", "k1", "one again", unit(0, 1)))  # replaced, not added
    again = await vectors.search("s1", unit(0, 1), k=5, threshold=0.99)
    assert [(h.key, h.prompt) for h in again] == [("k1", "one again")]
    assert await vectors.delete("s1", "k1") and not await vectors.delete("s1", "k1")
    assert [h.key for h in await vectors.search("s1", unit(1, 0), k=5, threshold=0.5)] == ["k3", "k2"]


async def test_threshold_is_cosine_similarity(stores: Stores) -> None:
    _, vectors = stores
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1, 1)))  # cosine with (1, 0): 0.7071
    assert len(await vectors.search("s", unit(1, 0), k=4, threshold=0.70)) == 1
    assert await vectors.search("s", unit(1, 0), k=4, threshold=0.71) == []
    assert await vectors.search("s", unit(0, 0, 1), k=4, threshold=0.01) == []  # orthogonal
    (hit,) = await vectors.search("s", unit(1, 0), k=4, threshold=0.5)
    assert hit.score == pytest.approx(0.7071, abs=1e-3)


@pytest.mark.parametrize("scope", ["a", "A", "ns-a.b:c", "ns-a.b:c d", " a", "x{y}|z", "tag,sep", "tag",
                                   "'quote\"", "*", "人工智能", "f" * 64])
async def test_scope_is_a_hard_filter_whatever_its_characters(stores: Stores, scope: str) -> None:
    _, vectors = stores
    others = [scope + "x", scope + "-b", scope.upper(), scope.lower(), scope.strip(), "a", "*", "tag"]
    for i, other in enumerate(o for o in others if o != scope):
        await vectors.upsert(VectorRecord(other, f"other{i}", "q", unit(1, 0)))
    assert await vectors.search(scope, unit(1, 0), k=4, threshold=0.0) == []
    await vectors.upsert(VectorRecord(scope, "mine", "q", unit(1, 0)))
    assert [h.key for h in await vectors.search(scope, unit(1, 0), k=4, threshold=0.0)] == ["mine"]


def test_escape_tag() -> None:
    assert escape_tag("ab_9") == "ab_9"
    assert escape_tag("a-b.c d") == "a\\-b\\.c\\ d"


async def test_documents_expire_with_their_answer(stores: Stores, search_redis: SearchRedis) -> None:
    _, vectors = stores
    await vectors.upsert(VectorRecord("s", "team-a:k", "p", unit(1), expires_at=time.time() + 100))
    doc = vectors.doc_id("s", "team-a:k")
    assert 0 < int(search_redis.cli("PTTL", doc)) <= 100_000
    await vectors.upsert(VectorRecord("s", "team-a:k", "p", unit(1), expires_at=None))
    assert search_redis.cli("PTTL", doc) == "-1"  # replaced without expiry: persisted
    await vectors.upsert(VectorRecord("s", "gone", "p", unit(1), expires_at=time.time() - 1))
    assert search_redis.cli("EXISTS", vectors.doc_id("s", "gone")) == "0"
    assert [h.key for h in await vectors.search("s", unit(1), k=4, threshold=0.5)] == ["team-a:k"]


async def test_readable_with_redis_cli(stores: Stores, search_redis: SearchRedis) -> None:
    exact, vectors = stores
    await exact.set("team-a:abc", b'{"answer": 42}', 60)
    await vectors.upsert(VectorRecord("s", "team-a:abc", "什么是人工智能？", unit(1, 2)))
    fields = search_redis.cli("HGETALL", vectors.doc_id("s", "team-a:abc")).splitlines()
    as_dict = dict(zip(fields[::2], fields[1::2], strict=False))
    assert as_dict["prompt"] == "什么是人工智能？" and as_dict["key"] == "team-a:abc"
    assert as_dict["scope"] == "s" and as_dict["namespace"] == "team-a" and "vector" in as_dict
    assert search_redis.cli("GET", as_dict["key"]) == '{"answer": 42}'
    info = search_redis.cli("FT.INFO", vectors.index)
    assert vectors.index in info and "HNSW" in info and "FLOAT32" in info and "COSINE" in info
    listed = [k async for k in exact.keys()]  # this index's vector documents are not entries
    assert "team-a:abc" in listed and not [k for k in listed if k.startswith(vectors.prefix)]
    assert [k async for k in exact.keys("team-a")] == ["team-a:abc"]


async def test_exact_half_is_the_redis_backend_sharing_one_pool(search_redis: SearchRedis) -> None:
    exact, vectors = await open_stores(search_redis.port)
    assert isinstance(exact, RedisBackend) and vectors.backend is exact
    await exact.set("k", b"v", None)
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1)))
    assert exact.connection() is vectors.backend.connection()
    await vectors.aclose()  # the backend owns the pool
    assert await exact.get("k") == b"v"
    await exact.aclose()


async def test_local_tier_shares_the_shared_tier(search_redis: SearchRedis) -> None:
    exact, vectors = await open_stores(search_redis.port, local_tier=True)
    assert exact.name == "redis+local" and isinstance(vectors.backend, RedisBackend)
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1)))
    assert len(await vectors.search("s", unit(1), k=1, threshold=0.9)) == 1
    await exact.aclose()


async def test_index_is_reused_and_created_again_when_gone(search_redis: SearchRedis) -> None:
    p = params(search_redis.port)
    exact = RedisSemanticBackend.from_params(p)
    first = RedisSemanticBackend.vector_store(p, 4, exact)
    await first.upsert(VectorRecord("s", "k1", "p", unit(1)))
    second = RedisSemanticBackend.vector_store(p, 4, exact)  # another worker: reuses the index
    assert [h.key for h in await second.search("s", unit(1), k=1, threshold=0.9)] == ["k1"]
    search_redis.cli("FT.DROPINDEX", p.redis_semantic_cache_index_name, "DD")
    assert await first.search("s", unit(1), k=1, threshold=0.9) == []  # made again, not an error
    await first.upsert(VectorRecord("s", "k2", "p", unit(1)))
    assert [h.key for h in await second.search("s", unit(1), k=1, threshold=0.9)] == ["k2"]
    await exact.aclose()


async def test_wrong_dimension_is_a_backend_error(stores: Stores) -> None:
    _, vectors = stores
    with pytest.raises(BackendError):
        await vectors.search("s", np.ones(3, dtype=np.float32), k=1, threshold=0.5)


async def test_server_killed_then_back(killable_search_redis: SearchRedis) -> None:
    exact, vectors = await open_stores(killable_search_redis.port)
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1)))
    killable_search_redis.kill()
    with pytest.raises(BackendError):
        await vectors.search("s", unit(1), k=1, threshold=0.5)
    with pytest.raises(BackendError):
        await vectors.upsert(VectorRecord("s", "k", "p", unit(1)))
    killable_search_redis.start()  # empty: no persistence, no index
    assert await vectors.search("s", unit(1), k=1, threshold=0.5) == []
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1)))
    assert len(await vectors.search("s", unit(1), k=1, threshold=0.5)) == 1
    await exact.aclose()


async def test_redis_without_search_module_is_a_clear_backend_error(redis_server: RedisServer) -> None:
    exact, vectors = await open_stores(redis_server.port)
    with pytest.raises(BackendError, match="no search module"):
        await vectors.search("s", unit(1), k=1, threshold=0.5)
    await exact.aclose()


def test_config_takes_redis_connection_keys_and_refuses_a_cluster() -> None:
    p = RedisSemanticCacheParams.model_validate({
        "type": "redis-semantic", "url": "redis://:pw@127.0.0.1:6390/2", "similarity_threshold": 0.8,
        "redis_semantic_cache_embedding_model": "use-multilingual-v3", "socket_timeout": 1, "ttl": 60})
    assert p.url and p.similarity_threshold == 0.8
    assert p.redis_semantic_cache_index_name == "litellm_semantic_cache_index"
    with pytest.raises(ValidationError, match="cluster"):
        RedisSemanticCacheParams.model_validate({"type": "redis-semantic",
                                                 "redis_startup_nodes": [{"host": "h", "port": 1}]})
    with pytest.raises(ValidationError):
        RedisSemanticCacheParams.model_validate({"type": "redis-semantic",
                                                 "redis_semantic_cache_index_name": "bad name"})
    assert load_backend_class("redis-semantic") is RedisSemanticBackend


async def test_an_index_of_another_schema_is_a_backend_error_naming_it(search_redis: SearchRedis) -> None:
    p = params(search_redis.port)
    index = p.redis_semantic_cache_index_name
    search_redis.cli("FT.CREATE", index, "ON", "HASH", "PREFIX", "1", f"{index}:", "SCHEMA", "prompt", "TEXT",
                     "prompt_vector", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "4", "DISTANCE_METRIC",
                     "COSINE")  # what RedisVL's SemanticCache (LiteLLM) makes
    exact = RedisSemanticBackend.from_params(p)
    vectors = RedisSemanticBackend.vector_store(p, 4, exact)
    with pytest.raises(BackendError, match=index):
        await vectors.search("s", unit(1), k=1, threshold=0.5)
    ours = params(search_redis.port)
    await RedisSemanticBackend.vector_store(ours, 4, exact).upsert(VectorRecord("s", "k", "p", unit(1)))
    other_dim = RedisSemanticBackend.vector_store(ours, 8, exact)  # the embedding model was changed
    with pytest.raises(BackendError, match=ours.redis_semantic_cache_index_name):
        await other_dim.search("s", np.ones(8, dtype=np.float32) / np.sqrt(8), k=1, threshold=0.5)
    await exact.aclose()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_resp2_and_resp3_replies(search_redis: SearchRedis, protocol: int) -> None:
    url = f"redis://127.0.0.1:{search_redis.port}/0?protocol={protocol}"
    p = RedisSemanticCacheParams(type="redis-semantic", url=url,
                                 redis_semantic_cache_index_name=f"reprise_test_resp{protocol}")
    exact = RedisSemanticBackend.from_params(p)
    vectors = RedisSemanticBackend.vector_store(p, 4, exact)
    await vectors.upsert(VectorRecord("s", f"k{protocol}", "héllo", unit(1, 0.2)))
    (hit,) = await vectors.search("s", unit(1, 0.2), k=4, threshold=0.9)
    assert (hit.key, hit.prompt) == (f"k{protocol}", "héllo") and hit.score == pytest.approx(1.0, abs=1e-4)
    await exact.aclose()


async def test_a_foreign_hash_under_the_prefix_is_skipped(stores: Stores) -> None:
    _, vectors = stores
    await vectors.upsert(VectorRecord("s", "k", "p", unit(1, 0.1)))
    stray = {"scope": "s", "vector": unit(1).tobytes()}  # no key, no prompt
    await vectors.backend.connection().hset(f"{vectors.prefix}stray", mapping=stray)
    assert [h.key for h in await vectors.search("s", unit(1), k=4, threshold=0.0)] == ["k"]
