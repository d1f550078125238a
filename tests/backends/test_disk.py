"""What only the SQLite store promises: persistence, a size bound, crash safety, sharing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import reprise
from reprise.backends.disk import FILENAME, DiskBackend
from reprise.errors import BackendError, BackendUnavailable

SRC = str(Path(reprise.__file__).resolve().parents[1])


def _child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": SRC + (os.pathsep + path if path else "")}


def _db_rows(directory: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(directory / FILENAME)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_no_io_until_first_use(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path / "lazy")
    await store.aclose()
    assert not (tmp_path / "lazy").exists()


async def test_survives_close_and_reopen(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path)
    await store.set("ns:forever", b"kept", None)
    await store.set("ns:later", b"kept too", 60)
    await store.set("ns:soon", b"gone", 0.2)
    await store.aclose()
    await asyncio.sleep(0.3)
    reopened = DiskBackend(directory=tmp_path)
    try:
        got = await reopened.get_many(["ns:forever", "ns:later", "ns:soon"])
        assert got == [b"kept", b"kept too", None]
    finally:
        await reopened.aclose()


async def test_evicts_least_recently_accessed_to_below_the_bound(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path, max_bytes=100_000)
    store.touch_interval = 0  # record every read, so the order below is exact
    try:
        for i in range(9):
            await store.set(f"k{i}", b"x" * 10_000, None)
        assert await store.get("k0") is not None
        await store.set("k9", b"x" * 10_000, None)  # exactly at the bound: nothing goes
        assert len({key async for key in store.keys()}) == 10
        await store.set("k10", b"x" * 10_000, None)
        left = {key async for key in store.keys()}
        assert left == {"k0", *(f"k{i}" for i in range(3, 11))}
        [(total,)] = _db_rows(tmp_path, "SELECT SUM(size) FROM entries")
        assert total == 90_000
    finally:
        await store.aclose()


async def test_oversize_value_is_not_stored(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path, max_bytes=1000)
    try:
        await store.set("k", b"small", None)
        await store.set("k", b"x" * 1001, None)
        assert await store.get("k") is None
    finally:
        await store.aclose()


async def test_reads_do_not_write_within_the_touch_interval(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path)
    try:
        await store.set("k", b"v", None)
        [(written,)] = _db_rows(tmp_path, "SELECT accessed_at FROM entries")
        for _ in range(5):
            assert await store.get("k") == b"v"
        assert _db_rows(tmp_path, "SELECT accessed_at FROM entries") == [(written,)]
        assert not store._noted
    finally:
        await store.aclose()


async def test_a_read_never_writes_its_touch_is_batched(tmp_path: Path) -> None:
    """A stale row's read is only noted; the next write carries the refresh (issue 15)."""
    store = DiskBackend(directory=tmp_path)
    store.touch_interval = 0
    store.flush_interval = 3600  # no background flush during the test
    try:
        await store.set("k", b"v", None)
        await store.set("other", b"w", None)
        [(written,)] = _db_rows(tmp_path, "SELECT accessed_at FROM entries WHERE key = 'k'")
        wal = tmp_path / (FILENAME + "-wal")
        before = wal.stat().st_size
        for _ in range(50):
            assert await store.get("k") == b"v"
        assert wal.stat().st_size == before  # nothing written by 50 reads
        assert _db_rows(tmp_path, "SELECT accessed_at FROM entries WHERE key = 'k'") == [(written,)]
        assert set(store._noted) == {"k"}
        await store.set("third", b"x", None)  # a write carries the noted read along
        [(touched,)] = _db_rows(tmp_path, "SELECT accessed_at FROM entries WHERE key = 'k'")
        assert isinstance(touched, float) and isinstance(written, float) and touched > written
        assert not store._noted
    finally:
        await store.aclose()


async def test_noted_reads_are_flushed_off_the_read_path(tmp_path: Path) -> None:
    """Without writes, a flush is scheduled (not awaited) once ``flush_interval`` has passed."""
    store = DiskBackend(directory=tmp_path)
    store.touch_interval = 0
    store.flush_interval = 0
    try:
        await store.set("k", b"v", None)
        [(written,)] = _db_rows(tmp_path, "SELECT accessed_at FROM entries")
        await asyncio.sleep(0.01)
        assert await store.get("k") == b"v"
        deadline = time.monotonic() + 5
        while _db_rows(tmp_path, "SELECT accessed_at FROM entries") == [(written,)]:
            assert time.monotonic() < deadline, "the noted read was never written"
            await asyncio.sleep(0.01)
    finally:
        await store.aclose()


async def test_young_rows_are_not_noted_while_the_store_is_old(tmp_path: Path) -> None:
    """Only rows in the older half of the age span are refreshed: the younger are not next to go."""
    store = DiskBackend(directory=tmp_path)
    store.touch_interval = 0
    try:
        await store.set("old", b"v", None)
        await store.set("young", b"v", None)
        now = time.time()
        conn = sqlite3.connect(tmp_path / FILENAME)
        with conn:
            conn.execute("UPDATE entries SET accessed_at = ? WHERE key = 'old'", (now - 1000,))
            conn.execute("UPDATE entries SET accessed_at = ? WHERE key = 'young'", (now - 100,))
        conn.close()
        store._oldest = now - 1000
        assert await store.get_many(["old", "young"]) == [b"v", b"v"]
        assert set(store._noted) == {"old"}
    finally:
        await store.aclose()


async def test_lock_elects_one_holder_per_key_among_stores(tmp_path: Path) -> None:
    one, two = DiskBackend(directory=tmp_path), DiskBackend(directory=tmp_path)
    try:
        assert await one.acquire("k", 10)
        assert not await two.acquire("k", 10)
        await two.release("k")  # not its lock: nothing happens
        assert not await two.acquire("k", 10)
        await one.release("k")
        assert await two.acquire("k", 0.05)
        await asyncio.sleep(0.1)
        assert await one.acquire("k", 10)  # an expired lock is taken over
    finally:
        await one.aclose()
        await two.aclose()



async def test_a_waiting_store_is_seen_by_the_holder_until_its_mark_expires(tmp_path: Path) -> None:
    """A process waiting for a lock holder's answer marks itself (peer_lock.py); the holder asks
    whether anyone waits, so a slow streaming client is held to the short budget only then."""
    one, two = DiskBackend(directory=tmp_path), DiskBackend(directory=tmp_path)
    try:
        assert await one.acquire("ns:k", 10)
        assert not await one.has_waiters("ns:k")
        await two.note_waiting("ns:k", 0.2)
        assert await one.has_waiters("ns:k")
        assert not await one.has_waiters("ns:k2") and not await one.has_waiters("ns:")  # that key only
        await two.note_waiting("ns:k", 0.2)  # renewed: still one mark
        await asyncio.sleep(0.3)
        assert not await one.has_waiters("ns:k")  # expired
        assert [key async for key in one.keys()] == []  # marks are not entries
    finally:
        await one.aclose()
        await two.aclose()

LOCK_HOLDER = """
import asyncio, sys
from reprise.backends.disk import DiskBackend

async def main():
    store = DiskBackend(directory=sys.argv[1])
    assert await store.acquire(sys.argv[2], 3600)
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _hold_lock(directory: Path, key: str) -> subprocess.Popen[bytes]:
    """Another process holding ``key``'s lock for an hour, until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(directory), key],
                            stdout=subprocess.PIPE, env=_child_env())
    assert proc.stdout is not None
    if proc.stdout.readline() != b"held\n":
        proc.kill()
        proc.wait()
        pytest.fail("the lock holder died before it held the lock")
    return proc


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def _set_owner(directory: Path, key: str, change: Callable[[list[str]], None]) -> None:
    """Rewrite one part of the lock owner's token (boot/pid-namespace/pid/start/random)."""
    conn = sqlite3.connect(directory / FILENAME)
    try:
        with conn:
            (owner,) = conn.execute("SELECT owner FROM locks WHERE key = ?", (key,)).fetchone()
            parts = owner.split("/")
            change(parts)
            conn.execute("UPDATE locks SET owner = ? WHERE key = ?", ("/".join(parts), key))
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the owner check reads Linux /proc")
async def test_the_lock_of_a_killed_process_is_taken_at_once(tmp_path: Path) -> None:
    """A worker killed (-9) while it leads a miss: the waiter takes its lock now, not after lock_timeout."""
    holder = _hold_lock(tmp_path, "k")
    store, third = DiskBackend(directory=tmp_path), DiskBackend(directory=tmp_path)
    try:
        assert not await store.acquire("k", 3600)  # its owner runs
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert await store.acquire("k", 3600)
        assert not await third.acquire("k", 3600)  # the new owner runs: it keeps the lock
        assert _db_rows(tmp_path, "SELECT owner FROM locks")[0][0].split("/")[2] == str(os.getpid())
    finally:
        _end(holder)
        await store.aclose()
        await third.aclose()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the owner check reads Linux /proc")
async def test_an_owner_is_judged_gone_only_when_that_is_sure(tmp_path: Path) -> None:
    """A reused pid (a later start time) is gone; an owner of another boot or machine, of another
    container, or written by an older version (a bare random name) is left to lock_timeout."""

    def reused(parts: list[str]) -> None:
        parts[3] = str(int(parts[3]) - 1)  # the pid runs, but it is not the process that took the lock

    def elsewhere(parts: list[str]) -> None:
        parts[0] = "another-boot"

    def container(parts: list[str]) -> None:
        parts[1] = "pid:[1]"

    def old(parts: list[str]) -> None:
        parts[:] = ["0123456789abcdef"]

    store = DiskBackend(directory=tmp_path)
    try:
        holder = _hold_lock(tmp_path, "reused")
        try:
            _set_owner(tmp_path, "reused", reused)
            assert await store.acquire("reused", 3600)
        finally:
            _end(holder)
        for change in (elsewhere, container, old):
            holder = _hold_lock(tmp_path, change.__name__)
            _set_owner(tmp_path, change.__name__, change)
            _end(holder)  # gone, but not provably so from here
            assert not await store.acquire(change.__name__, 3600), change.__name__
    finally:
        await store.aclose()


async def test_closed_store_refuses(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path)
    await store.set("k", b"v", None)
    await store.aclose()
    with pytest.raises(BackendUnavailable) as info:
        await store.get("k")
    assert info.value.backend == "disk"


async def test_unusable_directory_is_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = DiskBackend(directory=blocker)
    try:
        with pytest.raises(BackendUnavailable, match="a-file"):
            await store.get("k")
    finally:
        await store.aclose()


async def test_foreign_file_is_backend_error(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"this is not a database" * 100)
    store = DiskBackend(directory=tmp_path)
    try:
        with pytest.raises(BackendError) as info:
            await store.set("k", b"v", None)
        assert info.value.backend == "disk"
    finally:
        await store.aclose()


# -- other processes ----------------------------------------------------------------

WRITER = """
import asyncio, hashlib, os, random, sys
from reprise.backends.disk import DiskBackend

async def writer(store, worker):
    for i in range(10**9):
        key = f"w{worker}:{random.randrange(300)}"
        if i % 17 == 0:
            await store.delete(key)
            continue
        payload = os.urandom(random.randrange(0, 48_000))
        await store.set(key, payload + hashlib.sha256(key.encode() + payload).digest(), None)
        if worker == 0 and i == 40:
            print("ready", flush=True)

async def main():
    store = DiskBackend(directory=sys.argv[1], max_bytes=2_000_000, executor_threads=3)
    await asyncio.gather(*(writer(store, w) for w in range(4)))

asyncio.run(main())
"""


def _kill_mid_write(directory: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory)],
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", "writer died before it started"
        time.sleep(random.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def _verify_every_entry(directory: Path) -> int:
    store = DiskBackend(directory=directory)
    try:
        keys = [key async for key in store.keys()]
        values = await store.get_many(keys)
        for key, value in zip(keys, values, strict=True):
            assert value is not None and len(value) >= 32, key
            payload, digest = value[:-32], value[-32:]
            assert hashlib.sha256(key.encode() + payload).digest() == digest, key
        await store.set("after-crash", b"writable", None)  # and the store still takes writes
        assert await store.get("after-crash") == b"writable"
        return len(keys)
    finally:
        await store.aclose()


async def test_first_open_waits_while_another_connection_switches_the_file(tmp_path: Path) -> None:
    """SQLite refuses the first switch to WAL at once, with no busy wait, while another
    connection holds the fresh file's write lock: as another worker thread or gateway
    process does when it opens a new directory at the same moment (a clean-clone CI run
    failed so). The store must wait for it, not fail."""
    other = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    store = DiskBackend(directory=tmp_path)
    try:
        pending = asyncio.create_task(store.set("k", b"v", None))
        await asyncio.sleep(0.3)
        assert not pending.done(), pending.exception()
        other.execute("COMMIT")
        other.close()
        await pending
        assert await store.get("k") == b"v"
    finally:
        other.close()
        await store.aclose()


async def test_kill_9_mid_write_leaves_no_corruption(tmp_path: Path) -> None:
    for _ in range(3):  # each round starts from what the previous kill left
        _kill_mid_write(tmp_path)
        assert _db_rows(tmp_path, "PRAGMA integrity_check") == [("ok",)]
        assert await _verify_every_entry(tmp_path) > 0


SHARER = """
import asyncio, sys
from reprise.backends.disk import DiskBackend

async def main():
    store = DiskBackend(directory=sys.argv[1])
    assert await store.get("from-test") == b"hello child", "child did not see the test's write"
    for i in range(200):
        await store.set(f"child:{i}", b"c%d" % i, None)
    await store.aclose()
    print("ok", flush=True)

asyncio.run(main())
"""


async def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    store = DiskBackend(directory=tmp_path)
    try:
        await store.set("from-test", b"hello child", None)
        child = await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", SHARER, str(tmp_path)),
            stdout=asyncio.subprocess.PIPE,
            env=_child_env(),
        )
        for i in range(200):  # written while the child writes too
            await store.set(f"parent:{i}", b"p%d" % i, None)
        out, _ = await asyncio.wait_for(child.communicate(), timeout=60)
        assert child.returncode == 0 and out == b"ok\n"
        child_keys = [f"child:{i}" for i in range(200)]
        assert await store.get_many(child_keys) == [b"c%d" % i for i in range(200)]
        assert len({key async for key in store.keys("parent")}) == 200
    finally:
        await store.aclose()


async def test_a_filesystem_smaller_than_max_bytes_is_named_in_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Eviction runs at max_bytes only: a filesystem that fills first stops the cache, so say so at once."""
    caplog.set_level(logging.WARNING, logger="reprise.backends.disk")
    roomy = DiskBackend(directory=tmp_path / "roomy", max_bytes=2**20)
    huge = DiskBackend(directory=tmp_path / "huge", max_bytes=2**60)
    try:
        await roomy.set("k", b"v", None)
        assert caplog.records == []
        await huge.set("k", b"v", None)
        await huge.set("k2", b"v", None)
    finally:
        await roomy.aclose()
        await huge.aclose()
    (record,) = caplog.records
    assert str(tmp_path / "huge") in record.getMessage()
    assert f"max_bytes is {2**60} but the filesystem has room for about" in record.getMessage()
