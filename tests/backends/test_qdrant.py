"""qdrant-semantic in qdrant-client's local mode: the exact half, the vector half, fail-open."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.requires import require

require("qdrant_client", reason="pip install 'reprise[qdrant]'")

from reprise.backends.base import Backend  # noqa: E402
from reprise.backends.qdrant import QdrantExactStore, QdrantSemanticBackend  # noqa: E402
from reprise.backends.vector import VectorRecord, VectorStore  # noqa: E402
from reprise.config.models import QdrantSemanticCacheParams  # noqa: E402
from reprise.errors import BackendError  # noqa: E402


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
