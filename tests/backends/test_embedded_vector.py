"""The embedded vector index: scope filter, ranking, replace, delete, expiry, persistence."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from reprise.backends import embedded_vector
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
    size = (tmp_path / "vectors.log").stat().st_size
    for i in range(90):
        await store.delete("s", f"k{i}")
    await store.upsert(VectorRecord("t", "a", "prompt é 中", unit(0, 1)))
    await store.compacted()  # rewrites run in a worker thread
    await store.aclose()
    assert (tmp_path / "vectors.log").stat().st_size < size / 2  # dead records were dropped as they piled up
    again = LocalVectorStore(tmp_path, dim=4)
    assert len(again) == 11
    hits = await again.search("t", unit(0, 1), k=1, threshold=0.9)
    assert hits[0].prompt == "prompt é 中"
    await again.aclose()



async def test_writes_made_while_the_log_is_rewritten_are_kept(tmp_path: Path) -> None:
    """The rewrite runs in a worker thread (on the event loop it held every request 0.3-0.6 s at
    50,000-100,000 rows): what is upserted, replaced and deleted meanwhile reaches the new file."""
    store = LocalVectorStore(tmp_path, dim=4)
    for i in range(400):
        await store.upsert(VectorRecord("s", f"k{i}", f"p{i}", unit(1, i / 400)))
    for i in range(300):
        await store.delete("s", f"k{i}")
    assert store._compacting is not None  # started by a delete, not finished: nothing yielded since
    for i in range(300, 350):
        await store.delete("s", f"k{i}")  # rows the rewrite's copy still holds
    await store.upsert(VectorRecord("s", "k399", "replaced", unit(0, 1)))
    for i in range(5):
        await store.upsert(VectorRecord("t", f"new{i}", "during", unit(0, 0, 1)))
    await store.compacted()
    await store.aclose()
    again = LocalVectorStore(tmp_path, dim=4)
    assert len(again) == 55
    kept = {h.key for h in await again.search("s", unit(1, 0.9), k=100, threshold=0.0)}
    assert kept == {f"k{i}" for i in range(350, 400)}
    hit = await again.search("s", unit(0, 1), k=1, threshold=0.99)
    assert [(h.key, h.prompt) for h in hit] == [("k399", "replaced")]
    assert len(await again.search("t", unit(0, 0, 1), k=10, threshold=0.9)) == 5
    await again.aclose()


async def test_a_rewrite_copied_over_many_writes_keeps_every_change(tmp_path: Path) -> None:
    """With thousands of scopes the live rows are copied a batch of scopes per write; scopes
    changed between two batches (before or after their own copy) come out as last written."""
    store = LocalVectorStore(tmp_path, dim=4)
    expected: dict[tuple[str, str], str] = {}
    for i in range(6_000):
        await store.upsert(VectorRecord(f"s{i}", f"k{i}", f"p{i}", unit(1, i % 7)))
        expected[(f"s{i}", f"k{i}")] = f"p{i}"
    i = 0
    while store._copying is None and store._compacting is None:  # deletes until a rewrite begins
        await store.delete(f"s{i}", f"k{i}")
        del expected[(f"s{i}", f"k{i}")]
        i += 1
    assert store._copying is not None and not store._copying.finished  # more scopes than one batch
    for j in (i + 1, i + 2, 5_999, 5_998):  # scopes early in the copy, and late
        await store.delete(f"s{j}", f"k{j}")
        del expected[(f"s{j}", f"k{j}")]
    for j in (i + 10, 5_990):
        await store.upsert(VectorRecord(f"s{j}", f"k{j}", "replaced", unit(0, 1)))
        expected[(f"s{j}", f"k{j}")] = "replaced"
    await store.upsert(VectorRecord("new", "n", "during", unit(0, 0, 1)))
    expected[("new", "n")] = "during"
    await store.compacted()
    await store.aclose()
    again = LocalVectorStore(tmp_path, dim=4)
    found = {}
    for scope, _key in [*expected, ("s5999", "k5999"), (f"s{i + 1}", f"k{i + 1}")]:
        for hit in await again.search(scope, unit(1), k=5, threshold=-1.0):
            found[(scope, hit.key)] = hit.prompt
    assert found == expected and len(again) == len(expected)
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
    assert len(again) == len(rows) - 1  # k0 deleted, "late" expired: neither replayed
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


# -- bounds: expiry sweeps, eviction, compaction ----------------------------------------


class Clock:
    """The index's clock, moved by hand (``time.time`` and ``time.monotonic`` of its module)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(embedded_vector, "time", fake)
    return fake


async def test_expired_scopes_leave_memory_and_log(tmp_path: Path, clock: Clock) -> None:
    """6,000 one-request scopes with a TTL (the soak's hostile load), then nothing of them."""
    dim, n = 4, 6_000
    store = LocalVectorStore(tmp_path, dim=dim)
    vectors = random_rows(n, seed=9)[:, :dim].copy()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i in range(n):
        await store.upsert(VectorRecord(f"scope{i}", f"k{i}", f"tiny {i}", vectors[i], clock.now + 60))
    await store.upsert(VectorRecord("kept", "k", "no ttl", unit(1), None))
    full = store.stats()
    assert (full.vectors, full.scopes) == (n + 1, n + 1)
    assert full.allocated == (n + 1) * (4 * dim + 8 + 8)  # a new scope has room for one row, no more
    assert full.bytes > full.allocated and full.expired == 0
    log_full = (tmp_path / "vectors.log").stat().st_size
    assert [h.key for h in await store.search("scope7", vectors[7], k=1, threshold=0.9)] == ["k7"]

    clock.now += 61
    assert await store.search("scope7", vectors[7], k=1, threshold=0.9) == []
    calls = 0
    while store.stats().scopes > 2 and calls < 100:  # later traffic sweeps them, a bounded batch a call
        calls += 1
        await store.upsert(VectorRecord("later", f"l{calls}", "p", unit(0, 1), None))
    assert calls <= n // 256 + 1
    after = store.stats()
    assert (after.vectors, after.scopes, after.expired) == (1 + calls, 2, n)
    assert after.allocated < 4 * (4 * dim + 16) * (1 + calls) and after.bytes < full.bytes / 100
    await store.compacted()  # rewrites run in a worker thread
    assert (tmp_path / "vectors.log").stat().st_size < log_full / 20  # compacted: expired records gone
    await store.aclose()
    again = LocalVectorStore(tmp_path, dim=dim)
    assert (len(again), again.stats().scopes) == (1 + calls, 2)
    assert await again.search("scope7", vectors[7], k=1, threshold=0.0) == []
    await again.aclose()


async def test_expired_rows_are_swept_from_a_large_scope_which_shrinks(tmp_path: Path, clock: Clock) -> None:
    rows = random_rows(3_000, seed=10)
    store = LocalVectorStore(tmp_path, dim=DIM, coded_from=CODED_FROM)
    for i, row in enumerate(rows):  # all but every 30th row expire
        await store.upsert(VectorRecord("s", f"k{i}", f"p{i}", row, None if i % 30 == 0 else clock.now + 10))
    assert coded(store, "s")
    grown = store.stats().allocated
    clock.now += 11
    assert await store.search("s", rows[0], k=1, threshold=0.9)  # this search sweeps the scope
    stats = store.stats()
    assert (stats.vectors, stats.expired) == (100, 2_900)
    assert stats.allocated <= grown / 8  # the matrix, expiries and codes were reallocated smaller
    for i in (0, 30, 1_500, 2_970):  # the kept rows, moved and recoded, are found exactly
        hits = await store.search("s", near(rows[i], 0.8, seed=i), k=2, threshold=0.7)
        assert [h.key for h in hits] == [f"k{i}"] and abs(hits[0].score - 0.8) < 1e-5
    assert await store.search("s", rows[1], k=1, threshold=0.9) == []
    await store.aclose()


async def test_per_scope_and_total_bounds_evict_the_oldest(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=embedded_vector.__name__)
    store = LocalVectorStore(tmp_path, dim=4, max_vectors=100, max_vectors_per_scope=30)
    for i in range(40):
        await store.upsert(VectorRecord("a", f"a{i}", "p", unit(1, i / 40)))
    assert len(store) == 30 and store.stats().evicted == 10
    found = {h.key for h in await store.search("a", unit(1, 0.5), k=100, threshold=0.0)}
    assert found == {f"a{i}" for i in range(10, 40)}  # first in, first out
    for i in range(200):  # 200 one-row scopes: the total bound evicts the oldest, across scopes
        await store.upsert(VectorRecord(f"b{i}", f"b{i}", "p", unit(0, 1)))
    stats = store.stats()
    assert stats.vectors <= 100 and stats.evicted == 240 - stats.vectors
    assert await store.search("a", unit(1, 0.5), k=1, threshold=0.0) == []  # scope "a" was oldest
    assert stats.scopes == stats.vectors  # emptied scopes were dropped
    assert await store.search("b199", unit(0, 1), k=1, threshold=0.9)
    assert not await store.search(f"b{239 - stats.vectors - 40}", unit(0, 1), k=1, threshold=0.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "max_vectors_per_scope=30" in warnings[0]  # one line per burst
    clock.now += 61  # a quiet minute ends the burst
    for i in range(300):
        await store.upsert(VectorRecord(f"c{i}", f"c{i}", "p", unit(0, 0, 1)))
    assert len(caplog.records) == 2 and "max_vectors=100" in caplog.records[1].getMessage()
    await store.aclose()
    smaller = LocalVectorStore(tmp_path, dim=4, max_vectors=50)  # a lowered bound applies at start
    assert len(smaller) == 50
    assert await smaller.search("c299", unit(0, 0, 1), k=1, threshold=0.9)
    assert not await smaller.search("c249", unit(0, 0, 1), k=1, threshold=0.0)
    await smaller.aclose()


async def test_expired_rows_go_before_live_ones_and_bytes_are_bounded(tmp_path: Path, clock: Clock) -> None:
    store = LocalVectorStore(tmp_path, dim=4, max_vectors=10)
    start = clock.now
    await store.upsert(VectorRecord("e0", "e0", "p", unit(1), start + 2))
    await store.upsert(VectorRecord("e1", "e1", "p", unit(1), start + 3))
    for i in range(8):
        await store.upsert(VectorRecord(f"s{i}", f"s{i}", "p", unit(1)))
    clock.now = start + 2.5  # the periodic sweep takes e0
    await store.upsert(VectorRecord("x", "x", "p", unit(1)))
    clock.now = start + 3.2  # e1 has expired, the next periodic sweep is not due: the full index takes it
    await store.upsert(VectorRecord("y", "y", "p", unit(1)))
    stats = store.stats()
    assert (stats.vectors, stats.expired, stats.evicted) == (10, 2, 0)  # no live row evicted while one had expired
    await store.upsert(VectorRecord("z", "z", "p", unit(1)))  # nothing expired: the oldest write goes
    assert (store.stats().evicted, len(store)) == (1, 10)
    assert not await store.search("s0", unit(1), k=1, threshold=0.0)
    assert await store.search("s1", unit(1), k=1, threshold=0.0)
    await store.aclose()

    long = LocalVectorStore(tmp_path / "long", dim=4, max_bytes=200_000)
    for i in range(100):  # 10 KB prompts: the byte bound binds long before the row bound
        await long.upsert(VectorRecord("s", f"k{i}", "x" * 10_000, unit(1)))
    stats = long.stats()
    assert stats.bytes <= 200_000 and 10 < stats.vectors < 20 and stats.evicted == 100 - stats.vectors
    assert await long.search("s", unit(1), k=1, threshold=0.9)
    await long.aclose()


async def test_a_flooding_tenant_evicts_its_own_vectors_not_another_tenants(tmp_path: Path) -> None:
    """Found from outside: the total bounds evicted the oldest vectors of the whole index, so one
    tenant sending many new scopes (each prompt under another system prompt, say) emptied every
    other tenant's semantic cache. Now the oldest of the owners above an equal share go first."""
    store = LocalVectorStore(tmp_path, dim=4, max_vectors=100)
    for i in range(20):  # tenant A: 20 scopes written first, the oldest of the index
        await store.upsert(VectorRecord(f"a{i}", f"tA/ns:a{i}", "p", unit(1, i / 20)))
    for i in range(1_000):  # tenant B floods 10x the bound in new scopes
        await store.upsert(VectorRecord(f"b{i}", f"tB/ns:b{i}", "p", unit(0, 1)))
    stats = store.stats()
    assert stats.vectors <= 100 and stats.evicted == 1_020 - stats.vectors
    for i in range(20):  # A holds less than its share (50): none of its vectors was evicted
        assert [h.key for h in await store.search(f"a{i}", unit(1, i / 20), k=1, threshold=0.9)] == [f"tA/ns:a{i}"]
    assert await store.search("b999", unit(0, 1), k=1, threshold=0.9)  # B's newest stay, its oldest went
    assert not await store.search("b0", unit(0, 1), k=1, threshold=0.0)
    # the namespace is the owner where there is no tenant: the operator's plain keys are one owner too
    for i in range(1_000):
        await store.upsert(VectorRecord(f"c{i}", f"shared:c{i}", "p", unit(0, 0, 1)))
    assert await store.search("a0", unit(1, 0), k=1, threshold=0.9)
    await store.aclose()
    reopened = LocalVectorStore(tmp_path, dim=4, max_vectors=100)  # the owners are rebuilt from the log
    assert await reopened.search("a19", unit(1, 19 / 20), k=1, threshold=0.9)
    assert len(reopened) <= 100
    await reopened.aclose()



async def test_an_owner_that_was_alone_is_still_ranked_when_another_comes(tmp_path: Path) -> None:
    """Found in review: an owner's size is ranked only while there are others, and an owner alone after
    earlier owners left stale entries was never ranked; tenant B's 10 vectors were then all evicted
    while tenant A's 100 earlier ones stayed."""
    store = LocalVectorStore(tmp_path, dim=4, max_vectors=100)
    for owner in ("tX", "tY"):  # two owners come and go, leaving entries behind in the size heaps
        for i in range(10):
            await store.upsert(VectorRecord(f"{owner}{i}", f"{owner}/n:{i}", "p", unit(1)))
        for i in range(10):
            await store.delete(f"{owner}{i}", f"{owner}/n:{i}")
    for i in range(100):
        await store.upsert(VectorRecord(f"a{i}", f"tA/n:a{i}", "p", unit(1)))
    for i in range(10):
        await store.upsert(VectorRecord(f"b{i}", f"tB/n:b{i}", "p", unit(0, 1)))
    for i in range(10):
        assert await store.search(f"b{i}", unit(0, 1), k=1, threshold=0.9), i
    assert len(store) <= 100
    await store.aclose()

async def test_one_owners_share_is_bounded_by_bytes_too(tmp_path: Path) -> None:
    """The byte bound is shared out the same way: long prompts of one tenant cannot push out another's."""
    store = LocalVectorStore(tmp_path, dim=4, max_bytes=400_000)
    for i in range(5):
        await store.upsert(VectorRecord(f"a{i}", f"tA/ns:a{i}", "short", unit(1)))
    for i in range(200):  # 10 KB prompts: ~2 MB asked of a 400 KB index
        await store.upsert(VectorRecord(f"b{i}", f"tB/ns:b{i}", "x" * 10_000, unit(0, 1)))
    assert store.stats().bytes <= 400_000
    for i in range(5):
        assert await store.search(f"a{i}", unit(1), k=1, threshold=0.9)
    await store.aclose()


async def test_bounds_come_from_the_local_semantic_params(tmp_path: Path) -> None:
    from reprise.backends.local_semantic import LocalSemanticBackend
    from reprise.config.models import LocalSemanticCacheParams

    params = LocalSemanticCacheParams(type="local-semantic", semantic_cache_dir=str(tmp_path),
                                      max_vectors=7, max_vectors_per_scope=3, max_index_bytes=10**6)
    store = LocalSemanticBackend.vector_store(params, 4, LocalSemanticBackend.from_params(params))
    assert isinstance(store, LocalVectorStore)
    assert (store.max_vectors, store.max_vectors_per_scope, store.max_bytes) == (7, 3, 10**6)
    defaults = LocalSemanticCacheParams(type="local-semantic")
    assert (defaults.max_vectors, defaults.max_vectors_per_scope, defaults.max_index_bytes) == (
        embedded_vector.MAX_VECTORS, embedded_vector.MAX_VECTORS_PER_SCOPE, embedded_vector.MAX_BYTES)


@pytest.mark.parametrize("seed", range(4))
async def test_owner_accounting_holds_under_random_operations(tmp_path: Path, clock: Clock, seed: int) -> None:
    """Random upserts, replacements, deletes and expiries by five owners past small bounds: the
    owners' totals always add up to the index's, the bounds hold, and a reopened index agrees."""
    rng = np.random.default_rng(seed)
    store = LocalVectorStore(tmp_path, dim=4, max_vectors=60, max_vectors_per_scope=12, max_bytes=40_000)
    owners = ["tA/ns:", "tB/ns:", "shared:", "other:", ""]
    live: set[tuple[str, str]] = set()
    for step in range(1_500):
        owner = owners[int(rng.integers(len(owners)))]
        scope = f"{owner}s{int(rng.integers(12))}"
        key = f"{owner}k{int(rng.integers(40))}"
        action = rng.random()
        if action < 0.7:
            ttl = None if rng.random() < 0.7 else clock.now + float(rng.integers(1, 5))
            await store.upsert(VectorRecord(scope, key, "p" * int(rng.integers(1, 400)), unit(1, step % 7), ttl))
            live.add((scope, key))
        elif action < 0.9:
            await store.delete(scope, key)
        else:
            clock.now += float(rng.integers(0, 3))
        if step % 50 == 0:
            await asyncio.sleep(0.001)  # a log rewrite running in its thread may finish (and another begin)
        table = store._bounds()
        usage = table.usage
        assert usage.rows == sum(o.rows for o in table.owners.by_name.values())
        assert usage.text == sum(o.text for o in table.owners.by_name.values())
        assert len(table.scopes) == sum(o.scopes for o in table.owners.by_name.values())
        assert all(o.rows > 0 or o.scopes > 0 for o in table.owners.by_name.values())
        assert usage.rows <= 60 and table.bytes() <= 40_000
        assert all(rows.size <= 12 for rows in table.scopes.values())
    held = {(scope, key) for scope, rows in store._bounds().scopes.items()
            for row, key in enumerate(rows.keys[: rows.size]) if rows.expires[row] > clock.now}
    assert held <= live
    await store.compacted()
    await store.aclose()
    again = LocalVectorStore(tmp_path, dim=4, max_vectors=60, max_vectors_per_scope=12, max_bytes=40_000)
    reopened = {(scope, key) for scope, rows in again._bounds().scopes.items() for key in rows.keys[: rows.size]}
    assert reopened == held  # the log, rewritten in a thread along the way, says exactly what memory did
    await again.aclose()
