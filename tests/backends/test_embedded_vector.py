"""The embedded vector index: scope filter, ranking, replace, delete, expiry, persistence."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.vector import VectorHit, VectorRecord, VectorStore
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


# -- large scopes: the sign-code scan, then exact rescoring ------------------------------

DIM = 128
CODED_FROM = 1000  # the shipped default is 4,096; lower here so CI stays fast


def random_rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(row: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly ``cosine`` to the unit vector ``row``."""
    noise = np.random.default_rng([seed, 99]).standard_normal(DIM).astype(np.float32)  # not a row's seed
    noise -= noise.dot(row) * row
    noise /= np.linalg.norm(noise)
    return (cosine * row + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


async def filled(path: Path, scope: str, rows: np.ndarray, coded_from: int = CODED_FROM) -> LocalVectorStore:
    store = LocalVectorStore(path, dim=DIM, coded_from=coded_from)
    for i, row in enumerate(rows):
        await store.upsert(VectorRecord(scope, f"k{i}", f"p{i}", row))
    return store


def coded(store: LocalVectorStore, scope: str) -> bool:
    return store._open()[scope].codes is not None  # which path a search takes


def same_hits(got: list[VectorHit], want: list[VectorHit]) -> bool:
    return [h.key for h in got] == [h.key for h in want] and all(
        abs(g.score - w.score) < 1e-5 for g, w in zip(got, want, strict=True)
    )


async def test_planted_near_duplicates_are_found_in_a_large_scope(tmp_path: Path) -> None:
    rows = random_rows(20_000, seed=1)  # three chunks of codes, the last one partial
    store = await filled(tmp_path, "big", rows)
    assert coded(store, "big")
    picked = np.random.default_rng(2).choice(len(rows), 100, replace=False)
    for n, row in enumerate(picked.tolist()):
        cosine = 0.72 + 0.26 * n / len(picked)
        hits = await store.search("big", near(rows[row], cosine, seed=n), k=4, threshold=0.7)
        assert hits and hits[0].key == f"k{row}", (row, cosine, hits)
        assert abs(hits[0].score - cosine) < 1e-5  # the exact cosine, not an estimate
    await store.aclose()
    brute = LocalVectorStore(tmp_path, dim=DIM, coded_from=10**9)
    again = LocalVectorStore(tmp_path, dim=DIM, coded_from=CODED_FROM)
    assert not coded(brute, "big") and coded(again, "big")
    for n, query in enumerate(random_rows(50, seed=3)):
        query = near(rows[n], 0.8, seed=n) if n % 2 else query  # near-duplicates and misses
        for threshold in (0.3, 0.7):
            want = await brute.search("big", query, k=4, threshold=threshold)
            assert same_hits(await again.search("big", query, k=4, threshold=threshold), want)
    await brute.aclose()
    await again.aclose()


async def test_large_scopes_are_isolated_from_each_other_and_from_small_ones(tmp_path: Path) -> None:
    rows = random_rows(2_500, seed=4)
    store = await filled(tmp_path, "a", rows)
    for i, row in enumerate(rows):  # the same vectors under other keys in another scope
        await store.upsert(VectorRecord("b", f"b{i}", f"p{i}", row))
    for s in range(50):  # many small scopes beside them, holding the same vectors too
        await store.upsert(VectorRecord(f"small{s}", f"s{s}", "p", rows[s]))
    assert coded(store, "a") and coded(store, "b") and not coded(store, "small0")
    for i in range(0, 50, 7):
        assert [h.key for h in await store.search("a", rows[i], k=4, threshold=0.9)] == [f"k{i}"]
        assert [h.key for h in await store.search("b", rows[i], k=4, threshold=0.9)] == [f"b{i}"]
        assert [h.key for h in await store.search(f"small{i}", rows[i], k=4, threshold=0.0)] == [f"s{i}"]
    assert await store.search("c", rows[0], k=4, threshold=0.0) == []
    await store.aclose()


async def test_delete_and_replace_in_a_large_scope(tmp_path: Path) -> None:
    rows = random_rows(3_000, seed=5)
    store = await filled(tmp_path, "s", rows)
    assert await store.delete("s", "k0")  # the last row moves into row 0, code and all
    assert await store.search("s", rows[0], k=4, threshold=0.7) == []
    assert [h.key for h in await store.search("s", rows[-1], k=4, threshold=0.7)] == [f"k{len(rows) - 1}"]
    fresh = random_rows(1, seed=6)[0]
    await store.upsert(VectorRecord("s", "k1", "replaced", fresh))
    assert await store.search("s", rows[1], k=4, threshold=0.7) == []
    hits = await store.search("s", fresh, k=4, threshold=0.7)
    assert [(h.key, h.prompt) for h in hits] == [("k1", "replaced")]
    await store.upsert(VectorRecord("s", "late", "p", rows[2], expires_at=time.time() - 1))
    assert [h.key for h in await store.search("s", rows[2], k=4, threshold=0.7)] == ["k2"]  # expired skipped
    await store.aclose()
    again = LocalVectorStore(tmp_path, dim=DIM, coded_from=CODED_FROM)
    assert len(again) == len(rows) + 1 - 1
    assert await again.search("s", rows[0], k=4, threshold=0.7) == []
    assert [h.prompt for h in await again.search("s", fresh, k=4, threshold=0.7)] == ["replaced"]
    await again.aclose()


async def test_a_scope_switches_to_codes_when_it_grows(tmp_path: Path) -> None:
    rows = random_rows(CODED_FROM + 10, seed=7)
    store = await filled(tmp_path, "s", rows[: CODED_FROM - 1])
    assert not coded(store, "s")
    for i in range(CODED_FROM - 1, len(rows)):
        await store.upsert(VectorRecord("s", f"k{i}", f"p{i}", rows[i]))
    assert coded(store, "s")
    for i in (0, CODED_FROM - 2, CODED_FROM, len(rows) - 1):  # rows coded in the batch and after
        assert [h.key for h in await store.search("s", near(rows[i], 0.75, i), k=2, threshold=0.7)] == [f"k{i}"]
    await store.aclose()


async def test_torn_tail_of_a_large_scope_is_cut_and_later_writes_survive(tmp_path: Path) -> None:
    rows = random_rows(1_500, seed=8)
    store = await filled(tmp_path, "s", rows)
    await store.aclose()
    log = tmp_path / "vectors.log"
    whole = log.stat().st_size
    with open(log, "ab") as out:  # a header whose vector never made it to disk
        out.write(b'\x21\x00\x00\x00{"s":"s","k":"x","p":"","e":null}' + b"\x00" * 7)
    again = LocalVectorStore(tmp_path, dim=DIM, coded_from=CODED_FROM)
    assert len(again) == len(rows) and coded(again, "s")
    assert log.stat().st_size == whole
    await again.upsert(VectorRecord("s", "after", "written after the tear", rows[0] * -1))
    await again.aclose()
    third = LocalVectorStore(tmp_path, dim=DIM, coded_from=CODED_FROM)
    assert len(third) == len(rows) + 1
    assert [h.key for h in await third.search("s", -rows[0], k=1, threshold=0.9)] == ["after"]
    assert [h.key for h in await third.search("s", rows[7], k=1, threshold=0.9)] == ["k7"]
    await third.aclose()
