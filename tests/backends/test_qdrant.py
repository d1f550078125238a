"""qdrant-semantic in qdrant-client's local mode: the exact half, the vector half, fail-open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.requires import require

require("qdrant_client", reason="pip install 'reprise[qdrant]'")

from reprise.backends.base import Backend  # noqa: E402
from reprise.backends.qdrant import QdrantExactStore, QdrantSemanticBackend, QdrantVectorStore  # noqa: E402
from reprise.backends.vector import VectorRecord, VectorStore  # noqa: E402
from reprise.cache import AsyncCache  # noqa: E402
from reprise.config.models import QdrantSemanticCacheParams  # noqa: E402
from reprise.core.policy import CachePolicy  # noqa: E402
from reprise.errors import BackendError  # noqa: E402
from reprise.semantic.cache import SemanticCache  # noqa: E402
from reprise.semantic.matcher import Matcher  # noqa: E402
from reprise.semantic.settings import NO_GUARDS, SemanticSettings  # noqa: E402
from tests.semantic.test_semantic_cache import WordsEmbedder, lookup, plan, store_answer  # noqa: E402


def unit(*values: float) -> np.ndarray:
    v = np.zeros(4, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


@pytest.fixture()
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Backend, VectorStore]]:
    params = QdrantSemanticCacheParams(type="qdrant-semantic", qdrant_path=str(tmp_path / "q"))
    exact = QdrantSemanticBackend.from_params(params)
    vectors = QdrantSemanticBackend.vector_store(params, 4, exact)
    yield exact, vectors
    await vectors.aclose()
    await exact.aclose()


async def test_exact_half(stores: tuple[Backend, VectorStore]) -> None:
    exact, _ = stores
    assert isinstance(exact, Backend)
    await exact.set("ns:k1", b"\x00one", None)
    await exact.set("k2", b"two", 10)
    assert await exact.get("ns:k1") == b"\x00one"
    assert await exact.get_many(["k2", "nope"]) == [b"two", None]
    assert sorted([k async for k in exact.keys()]) == ["k2", "ns:k1"]
    assert [k async for k in exact.keys("ns")] == ["ns:k1"]
    assert await exact.delete("k2") and not await exact.delete("k2")
    assert await exact.clear("ns") == 1
    assert await exact.get("ns:k1") is None


async def test_vector_half_is_scoped(stores: tuple[Backend, VectorStore]) -> None:
    _, vectors = stores
    await vectors.upsert(VectorRecord("s1", "k1", "one", unit(1, 0)))
    await vectors.upsert(VectorRecord("s1", "k2", "two", unit(1, 1)))
    await vectors.upsert(VectorRecord("s2", "k3", "three", unit(1, 0)))
    hits = await vectors.search("s1", unit(1, 0.1), k=5, threshold=0.5)
    assert [h.key for h in hits] == ["k1", "k2"] and hits[0].prompt == "one"
    assert await vectors.search("s1", unit(0, 0, 1), k=5, threshold=0.5) == []
    await vectors.upsert(VectorRecord("s1", "k1", "one again", unit(1, 0)))
    assert len(await vectors.search("s1", unit(1, 0), k=5, threshold=0.99)) == 1
    await vectors.delete("s1", "k1")
    assert [h.key for h in await vectors.search("s1", unit(1, 0), k=5, threshold=0.5)] == ["k2"]


async def test_server_down_is_a_backend_error() -> None:
    params = QdrantSemanticCacheParams(type="qdrant-semantic", qdrant_api_base="http://127.0.0.1:9")
    exact = QdrantSemanticBackend.from_params(params)
    assert isinstance(exact, QdrantExactStore)
    with pytest.raises(BackendError):
        await exact.get("k")
    await exact.aclose()


@pytest.fixture()
async def qdrant(tmp_path: Path) -> AsyncIterator[tuple[QdrantSemanticCacheParams, QdrantExactStore]]:
    """The exact half (its connection shared by any vector half made from it), closed even on failure."""
    params = QdrantSemanticCacheParams(type="qdrant-semantic", qdrant_path=str(tmp_path / "q"))
    exact = QdrantSemanticBackend.from_params(params)
    assert isinstance(exact, QdrantExactStore)
    yield params, exact
    await exact.aclose()


async def points(store: QdrantExactStore, collection: str) -> int:
    client = store.connection._client
    assert client is not None
    return (await client.count(collection, exact=True)).count


async def test_expired_near_repeats_never_hide_a_live_answer_and_are_swept(
        qdrant: tuple[QdrantSemanticCacheParams, QdrantExactStore]) -> None:
    """Found from outside: expired points stayed, so k expired near-repeats nearer than a live
    answer took every top-k slot (a miss), and both collections grew without bound."""
    params, exact = qdrant
    connection = exact.connection
    connection.sweep_interval = 1e9  # only the first write sweeps (nothing then): the filter alone is tested
    vectors = QdrantSemanticBackend.vector_store(params, WordsEmbedder.dim, exact)
    cache = AsyncCache(exact, CachePolicy())
    matcher = Matcher(WordsEmbedder(), SemanticSettings(threshold=0.8, verify_below=0.0, guards=NO_GUARDS))
    semantic = SemanticCache(matcher, vectors)
    planted = matcher.settings.k + 2
    for n in range(planted):  # punctuation is invisible to WordsEmbedder: each scores 1.0 against the query
        await store_answer(cache, semantic, "tell me about order 7" + "!" * (n + 1), plan(ttl=0.2))
    await asyncio.sleep(0.4)
    live = await store_answer(cache, semantic, "tell me about the order 7", plan())  # cosine 0.89

    entry, request = await lookup(cache, semantic, "tell me about order 7", plan())
    assert entry is not None and request.match is not None and request.match.key == live
    assert 0.85 < request.match.score < 0.95
    assert await points(exact, connection.collection) == planted + 1  # not swept yet: filtered out

    connection.sweep_batch = planted - 2  # a sweep's work is bounded: the rest waits for the next
    assert await connection.sweep(time.time()) == 2 * (planted - 2)  # vectors and answers
    assert await connection.sweep(time.time()) == 2 * 2
    assert await points(exact, connection.collection) == 1
    assert await points(exact, connection.exact_collection) == 1
    assert connection.sweep_stats.removed == 2 * planted and connection.sweep_stats.failures == 0
    entry, _ = await lookup(cache, semantic, "tell me about order 7", plan())
    assert entry is not None


async def test_sweeps_run_from_writes_on_a_schedule_and_fail_open(
        qdrant: tuple[QdrantSemanticCacheParams, QdrantExactStore]) -> None:
    params, exact = qdrant
    connection = exact.connection
    connection.sweep_every, connection.sweep_interval = 3, 1e9
    vectors = QdrantSemanticBackend.vector_store(params, 4, exact)
    assert isinstance(vectors, QdrantVectorStore)
    past = time.time() - 1
    await vectors.upsert(VectorRecord("s", "new", "new", unit(1, 0)))  # 1st write of a process: sweeps
    await connection.settled()  # the write did not wait for it
    assert connection.sweep_stats.sweeps == 1
    await vectors.upsert(VectorRecord("s", "gone", "gone", unit(1, 0), past))  # writes 2 and 3: no sweep
    await exact.set("a", b"a", -1.0)
    assert connection.sweep_stats.sweeps == 1 and await points(exact, connection.collection) == 2
    assert [h.key for h in await vectors.search("s", unit(1, 0), k=4, threshold=0.5)] == ["new"]
    await exact.set("b", b"b", None)  # the 3rd write since the last sweep: sweeps both collections
    await connection.settled()
    assert connection.sweep_stats.sweeps == 2 and connection.sweep_stats.removed == 2
    assert await points(exact, connection.collection) == 1
    assert [k async for k in exact.keys()] == ["b"]

    client = connection._client
    assert client is not None
    await client.delete_collection(connection.collection)  # a fault under the sweep
    connection.sweep_every = 1
    await exact.set("c", b"c", None)  # the write succeeds; the sweep's failure is counted, not raised
    await connection.settled()
    assert connection.sweep_stats.failures == 1 and await exact.get("c") == b"c"


async def test_collections_are_bounded_oldest_writes_first(tmp_path: Path) -> None:
    """Points without a ttl used to stay forever: ``max_vectors`` bounds each collection."""
    params = QdrantSemanticCacheParams(type="qdrant-semantic", qdrant_path=str(tmp_path / "q"), max_vectors=4)
    exact = QdrantSemanticBackend.from_params(params)
    assert isinstance(exact, QdrantExactStore)
    connection = exact.connection
    connection.sweep_every, connection.sweep_interval, connection.sweep_batch = 1, 1e9, 1
    vectors = QdrantSemanticBackend.vector_store(params, 4, exact)
    try:
        for n in range(7):
            await exact.set(f"k{n}", b"v", None)
            await connection.settled()
            await vectors.upsert(VectorRecord("s", f"k{n}", "p", unit(1, n)))
            await connection.settled()
        assert sorted([k async for k in exact.keys()]) == ["k3", "k4", "k5", "k6"]
        hits = await vectors.search("s", unit(1, 1), k=10, threshold=0.0)
        assert sorted(h.key for h in hits) == ["k3", "k4", "k5", "k6"]
        assert connection.sweep_stats.evicted == 6 and connection.sweep_stats.failures == 0
    finally:
        await vectors.aclose()
        await exact.aclose()
