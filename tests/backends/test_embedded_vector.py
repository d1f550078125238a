"""The embedded vector index: scope filter, ranking, replace, delete, expiry, persistence."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.vector import VectorRecord, VectorStore
from reprise.errors import BackendError


def unit(*values: float) -> np.ndarray:
    v = np.zeros(4, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


async def test_search_is_scoped_and_ranked(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path, dim=4)
    assert isinstance(store, VectorStore)
    await store.upsert(VectorRecord("s1", "k1", "one", unit(1, 0)))
    await store.upsert(VectorRecord("s1", "k2", "two", unit(1, 1)))
    await store.upsert(VectorRecord("s2", "k3", "three", unit(1, 0)))
    hits = await store.search("s1", unit(1, 0.1), k=5, threshold=0.5)
    assert [h.key for h in hits] == ["k1", "k2"]
    assert hits[0].prompt == "one" and 0.99 < hits[0].score <= 1.0
    assert [h.key for h in await store.search("s1", unit(1, 0.1), k=1, threshold=0.5)] == ["k1"]
    assert await store.search("s1", unit(0, 0, 1), k=5, threshold=0.5) == []
    assert await store.search("nope", unit(1, 0), k=5, threshold=0.0) == []
    await store.aclose()


async def test_replace_delete_expiry_and_growth(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path, dim=4)
    for i in range(40):  # beyond the initial capacity
        await store.upsert(VectorRecord("s", f"k{i}", f"p{i}", unit(1, i / 40)))
    await store.upsert(VectorRecord("s", "k0", "new prompt", unit(0, 1)))
    assert len(store) == 40
    hits = await store.search("s", unit(0, 1), k=1, threshold=0.9)
    assert hits[0].key == "k0" and hits[0].prompt == "new prompt"
    assert await store.delete("s", "k0") and not await store.delete("s", "k0")
    assert all(h.key != "k0" for h in await store.search("s", unit(0, 1), k=50, threshold=0.0))
    await store.upsert(VectorRecord("s", "old", "gone", unit(0, 0, 0, 1), expires_at=time.time() - 1))
    assert await store.search("s", unit(0, 0, 0, 1), k=5, threshold=0.9) == []
    await store.aclose()


async def test_persisted_across_reopen_and_compacted(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path, dim=4)
    for i in range(100):
        await store.upsert(VectorRecord("s", f"k{i}", f"p{i}", unit(1, i)))
    for i in range(90):
        await store.delete("s", f"k{i}")
    await store.upsert(VectorRecord("t", "a", "prompt é 中", unit(0, 1)))
    await store.aclose()
    size = (tmp_path / "vectors.log").stat().st_size
    again = LocalVectorStore(tmp_path, dim=4)
    assert len(again) == 11
    hits = await again.search("t", unit(0, 1), k=1, threshold=0.9)
    assert hits[0].prompt == "prompt é 中"
    assert (tmp_path / "vectors.log").stat().st_size < size  # dead records were dropped
    await again.aclose()


async def test_torn_tail_is_ignored(tmp_path: Path) -> None:
    store = LocalVectorStore(tmp_path, dim=4)
    await store.upsert(VectorRecord("s", "k", "p", unit(1)))
    await store.aclose()
    with open(tmp_path / "vectors.log", "ab") as log:
        log.write(b"\x40\x00\x00\x00{\"s\":")
    again = LocalVectorStore(tmp_path, dim=4)
    assert len(again) == 1
    await again.aclose()


async def test_errors_are_backend_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = LocalVectorStore(blocker / "sub", dim=4)
    with pytest.raises(BackendError):
        await store.search("s", unit(1), k=1, threshold=0.0)
    ok = LocalVectorStore(tmp_path / "ok", dim=4)
    with pytest.raises(BackendError):
        await ok.upsert(VectorRecord("s", "k", "p", np.ones(3, dtype=np.float32)))
    await ok.aclose()
