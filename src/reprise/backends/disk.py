"""A persistent store in one SQLite file (LiteLLM's ``type: disk``).

Why SQLite: a write is one transaction, so a process killed mid-write (even
``kill -9``) leaves either the old row or the new one, never a torn value, and
the next open recovers from the write-ahead log by itself. WAL mode lets
readers run beside a writer, and ``busy_timeout`` lets several gateway processes
share one directory. ``synchronous=NORMAL`` keeps commits cheap: in WAL mode it
cannot corrupt the file; only an OS crash or power loss may drop the last
commits, which for a cache is a few misses.

SQLite calls block, so they all run in a small :class:`ThreadPoolExecutor`
owned by the backend; the event loop only awaits them. Each worker thread has
its own connection (sqlite3 objects are not safe to share between threads while
in use); they are all closed together in :meth:`DiskBackend.aclose`, after the
pool has stopped.

Size is bounded by a running total of payload bytes. Other processes' writes
are not seen in it, so the true total is read back from the table (cheaply,
from a covering index) whenever the running one crosses ``max_bytes`` and at
least once a minute; if it is over, least-recently-accessed rows are evicted
down to :data:`EVICT_TO` of the bound. The bound is therefore approximate when
several processes share a directory.

Reads never write (issue 15). Refreshing a row's ``accessed_at`` on every hit
turned a large working set's hits into random page writes (0.5 GB per 10 s at
100,000 entries). Recency is kept approximately instead:

* a hit only *notes* its key in memory; the notes are written in one batched
  ``UPDATE`` off the hit path: by the next :meth:`~DiskBackend.set` (which writes
  anyway), before any eviction, at :meth:`~DiskBackend.aclose`, or by a flush
  scheduled at most every :attr:`~DiskBackend.flush_interval` seconds that no
  request awaits;
* a key is noted only when its stored ``accessed_at`` is older than half the age
  span of the store (now minus the oldest ``accessed_at``), and never more often
  than :attr:`~DiskBackend.touch_interval`. A row in the younger half is not next
  in line for eviction, so refreshing it changes nothing yet. Under eviction
  pressure the span is the time a row lives untouched, so a row read at least
  once per half of that is kept, as LRU would keep it; one read less often is
  evicted at most half a span earlier than exact LRU would evict it. Without
  pressure the span grows and touches become rare.

A touch rewrites the whole row (SQLite rewrites a record, overflow pages included, on
``UPDATE``): for a 100 KB answer about 100 KB. That is why touches are rare rather
than merely batched.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

from reprise.backends.base import Capabilities
from reprise.backends.disk_sql import (
    CHUNK,
    SCHEMA,
    evict_lru,
    has_waiters,
    keys_page,
    mark_waiting,
    prefix_range,
    stored_bytes,
    take_lock,
)
from reprise.backends.lock_owner import owner_token
from reprise.backends.sqlite_tx import WriteTransaction, enable_wal
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable

if TYPE_CHECKING:
    from reprise.config.models import DiskCacheParams

T = TypeVar("T")

log = logging.getLogger(__name__)

FILENAME = "reprise-cache.sqlite3"
EVICT_TO = 0.9
"""Eviction frees space down to this fraction of ``max_bytes``, so it runs rarely."""

_BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's write lock
_RECOUNT_INTERVAL = 60.0  # seconds between re-reading the true total (other writers)
_MAX_NOTED = 65_536  # keys noted for a touch between two flushes; more are dropped until one
_MMAP_BYTES = 256 * 2**20  # reads map the file: a hit on a large file costs no read() copies
_WAL_ROOM = 16 * 2**20  # beyond max_bytes: the write-ahead log (checkpointed every ~4 MiB) and SQLite's pages


class DiskBackend:
    """Entries in ``{directory}/reprise-cache.sqlite3``, kept across restarts.

    Nothing touches the disk until the first call. ``max_bytes`` bounds the sum
    of stored value lengths (SQLite's own overhead is not counted).

    It is also a :class:`~reprise.backends.base.DistributedLock`: a row of the
    ``locks`` table elects one producer per key among the processes sharing the
    file (``--workers N``), so N identical misses on one machine cost one upstream
    call. ``lock_timeout`` (0 disables) bounds how long another process waits.
    """

    name = "disk"
    capabilities = Capabilities(native_ttl=True, shared=True, persistent=True)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    touch_interval: float = 60.0
    """A read notes a row for an ``accessed_at`` refresh only if that is older than this
    many seconds (and than half the store's age span: see the module docstring)."""
    flush_interval: float = 5.0
    """Noted reads wait at most this long (or until the next write) to be written."""

    def __init__(
        self,
        *,
        directory: str | os.PathLike[str],
        max_bytes: int = 1 * 2**30,
        executor_threads: int = 2,
        lock_timeout: float = 10.0,
    ) -> None:
        if max_bytes < 1 or executor_threads < 1:
            raise ValueError("max_bytes and executor_threads must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.lock_timeout = lock_timeout
        self._owner: str | None = None  # this store's name in the locks table (lock_owner.py), on first use
        self._executor = ThreadPoolExecutor(executor_threads, thread_name_prefix="reprise-disk")
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _connections, _ready, _total and _owner
        self._connections: list[sqlite3.Connection] = []
        self._ready = False
        self._total = 0
        self._recount_at = 0.0
        self._oldest: float | None = None  # the oldest accessed_at seen at the last recount
        self._noted: dict[str, float] = {}  # key -> when a read found it stale; guarded by _lock
        self._flush_due = 0.0  # monotonic time from which a read schedules a flush; set by _note
        self._flushing = False
        self._closed = False

    @classmethod
    def from_params(cls, params: DiskCacheParams) -> Self:
        """Build from ``type: disk``'s params: LiteLLM's ``disk_cache_dir``, and ``max_bytes``."""
        return cls(directory=params.disk_cache_dir, max_bytes=params.max_bytes)

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = (await self._run(self._get_many, [key]))[0]
        if self._noted:
            self._maybe_flush()
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._run(self._get_many, list(keys))
        if self._noted:
            self._maybe_flush()
        return values

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._run(self._set, key, bytes(value), ttl)

    async def delete(self, key: str) -> bool:
        return await self._run(self._delete, key)

    async def clear(self, namespace: str | None = None) -> int:
        return await self._run(self._clear, namespace)

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        after: str | None = None
        while True:
            page = await self._run(self._keys_page, after, namespace)
            for key in page:
                yield key
            if len(page) < CHUNK:
                return
            after = page[-1]

    async def aclose(self) -> None:
        if self._closed:
            return
        if self._noted:
            try:
                await self._run(self._flush_noted)
            except BackendError:
                pass  # recency is a hint; closing must not fail for it
        self._closed = True
        # Let running statements finish (off the loop), then no thread uses a connection.
        await asyncio.to_thread(self._executor.shutdown, True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # -- DistributedLock: one producer per key among processes sharing the file ---------

    async def acquire(self, key: str, ttl: float) -> bool:
        return await self._run(self._acquire, key, ttl)

    async def release(self, key: str) -> None:
        await self._run(self._release, key)

    async def note_waiting(self, key: str, ttl: float) -> None:
        await self._run(self._note_waiting, key, ttl)

    async def has_waiters(self, key: str) -> bool:
        return await self._run(self._has_waiters, key)

    # -- running work off the loop, errors translated ---------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise BackendUnavailable(f"disk cache at {self.directory} is closed", self.name)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:  # the pool was shut down by a concurrent aclose
            raise BackendUnavailable(f"disk cache at {self.directory} is closed", self.name) from exc
        try:
            return await future
        except sqlite3.OperationalError as exc:
            where = f"disk cache at {self.directory}: {exc}"
            if "locked" in str(exc) or "busy" in str(exc):
                raise BackendTimeout(where, self.name) from exc
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                where += " (free space on that filesystem or lower max_bytes; see docs/operations.md, 'A full disk')"
            raise BackendUnavailable(where, self.name) from exc
        except sqlite3.Error as exc:
            raise BackendError(f"disk cache at {self.directory}: {exc}", self.name) from exc
        except OSError as exc:  # the directory cannot be created
            raise BackendUnavailable(f"disk cache at {self.directory}: {exc}", self.name) from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.directory / FILENAME,
            timeout=_BUSY_TIMEOUT,
            isolation_level=None,  # autocommit; write transactions are explicit below
            check_same_thread=False,  # closed by aclose from another thread, never shared
        )
        try:
            enable_wal(conn, _BUSY_TIMEOUT)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            with self._lock:
                if not self._ready:
                    with WriteTransaction(conn):
                        for statement in SCHEMA:
                            conn.execute(statement)
                        self._total = stored_bytes(conn)
                        self._oldest = conn.execute("SELECT MIN(accessed_at) FROM entries").fetchone()[0]
                    self._ready = True
                    self._check_room()
                self._connections.append(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_room(self) -> None:
        """Warn once when the filesystem fills before ``max_bytes`` does.

        Eviction runs at ``max_bytes`` only. On a smaller filesystem (a small tmpfs, a
        64 MB ``/dev/shm`` in a container) writes fail with "database or disk is full"
        first, and a full disk cannot be cleaned from inside: deleting rows needs room
        in the write-ahead log too (docs/operations.md says how to get out).
        """
        try:
            held = sum(f.stat().st_size for f in self.directory.glob(FILENAME + "*") if f.is_file())
            room = shutil.disk_usage(self.directory).free + held
        except OSError:
            return  # a hint only
        if room < self.max_bytes + _WAL_ROOM:
            log.warning(
                "disk cache at %s: max_bytes is %d but the filesystem has room for about %d bytes of cache "
                "files; when it is full nothing more is stored. Lower max_bytes (to about half of that "
                "room) or give the cache more space",
                self.directory, self.max_bytes, room,
            )

    # -- blocking bodies (worker threads) ---------------------------------------------

    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        conn = self._conn()
        now = time.time()
        stale_before = now - self._touch_age(now)
        found: dict[str, bytes] = {}
        expired: list[str] = []
        stale: list[str] = []
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT key, value, expires_at, accessed_at FROM entries WHERE key IN ({marks})",
                chunk,
            )
            for key, value, expires_at, accessed_at in rows:
                if expires_at is not None and expires_at <= now:
                    expired.append(key)
                    continue
                found[key] = value
                if accessed_at <= stale_before:
                    stale.append(key)
        if expired:
            try:
                self._drop_expired(conn, expired, now)
            except sqlite3.OperationalError:
                pass  # the write lock stayed busy: a later read or eviction removes them
        if stale:
            self._note(stale, now)
        return [found.get(key) for key in keys]

    def _touch_age(self, now: float) -> float:
        """How old a row's ``accessed_at`` must be for a read to note it (module docstring)."""
        oldest = self._oldest
        half_span = 0.0 if oldest is None else (now - oldest) / 2
        return max(self.touch_interval, half_span)

    def _note(self, keys: list[str], now: float) -> None:
        with self._lock:
            noted = self._noted
            if not noted:  # the first note since a flush starts the wait for the next one
                self._flush_due = time.monotonic() + self.flush_interval
            for key in keys:
                if len(noted) >= _MAX_NOTED:
                    break
                noted[key] = now

    def _maybe_flush(self) -> None:
        """Schedule a flush of the noted reads, not awaited by the read that calls this."""
        if self._flushing or self._closed:
            return
        now = time.monotonic()
        if now < self._flush_due and len(self._noted) < _MAX_NOTED:
            return
        self._flushing = True
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, self._flush_noted)
        except RuntimeError:  # the pool was shut down by a concurrent aclose
            self._flushing = False
            return
        future.add_done_callback(self._flushed)

    def _flushed(self, future: asyncio.Future[None]) -> None:
        self._flushing = False
        if not future.cancelled():
            future.exception()  # recency is a hint: a failed flush is dropped, not raised

    def _flush_noted(self) -> None:
        """Write the noted reads' times in one transaction (worker thread)."""
        with self._lock:
            noted, self._noted = self._noted, {}
        if not noted:
            return
        conn = self._conn()
        try:
            with WriteTransaction(conn):
                conn.executemany(
                    "UPDATE entries SET accessed_at = ? WHERE key = ? AND accessed_at < ?",
                    [(at, key, at) for key, at in noted.items()],
                )
        except sqlite3.OperationalError:
            pass  # the write lock stayed busy: recency is a hint

    def _owner_name(self) -> str:
        with self._lock:  # one name per store, though two worker threads may ask first together
            if self._owner is None:
                self._owner = owner_token()
            return self._owner

    def _acquire(self, key: str, ttl: float) -> bool:
        return take_lock(self._conn(), key, self._owner_name(), ttl, time.time())

    def _note_waiting(self, key: str, ttl: float) -> None:
        mark_waiting(self._conn(), key, self._owner_name(), ttl, time.time())

    def _has_waiters(self, key: str) -> bool:
        return has_waiters(self._conn(), key, time.time())

    def _release(self, key: str) -> None:
        conn = self._conn()
        with WriteTransaction(conn):
            conn.execute("DELETE FROM locks WHERE key = ? AND owner = ?", (key, self._owner_name()))

    def _drop_expired(self, conn: sqlite3.Connection, keys: list[str], now: float) -> None:
        with WriteTransaction(conn):
            freed = 0
            for key in keys:
                row = conn.execute(
                    "SELECT size FROM entries WHERE key = ? AND expires_at <= ?", (key, now)
                ).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM entries WHERE key = ?", (key,))
                    freed += row[0]
        self._add_bytes(-freed)

    def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        if len(value) > self.max_bytes or (ttl is not None and ttl <= 0):
            self._delete(key)  # the old value is stale either way
            return
        conn = self._conn()
        if self._noted:
            self._flush_noted()  # this call writes anyway: the noted reads ride along
        now = time.time()
        expires_at = None if ttl is None else now + ttl
        with WriteTransaction(conn):
            old = conn.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO entries (key, expires_at, size, accessed_at, value)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, expires_at, len(value), now, value),
            )
        total = self._add_bytes(len(value) - (old[0] if old else 0))
        if total > self.max_bytes or now >= self._recount_at:
            self._recount(conn, now)

    def _delete(self, key: str) -> bool:
        conn = self._conn()
        with WriteTransaction(conn):
            row = conn.execute(
                "SELECT size, expires_at FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))
        if row is None:
            return False
        self._add_bytes(-row[0])
        return row[1] is None or row[1] > time.time()

    def _clear(self, namespace: str | None) -> int:
        conn = self._conn()
        with WriteTransaction(conn):
            if namespace is None:
                count = conn.execute("DELETE FROM entries").rowcount
            else:
                low, high = prefix_range(namespace)
                count = conn.execute(
                    "DELETE FROM entries WHERE key >= ? AND key < ?", (low, high)
                ).rowcount
            total = stored_bytes(conn)
        with self._lock:
            self._total = total
        return count

    def _keys_page(self, after: str | None, namespace: str | None) -> list[str]:
        return keys_page(self._conn(), after, namespace, time.time())

    def _recount(self, conn: sqlite3.Connection, now: float) -> None:
        """Re-read the true total (other processes write too); evict if it is over the bound."""
        total = stored_bytes(conn)
        oldest = conn.execute("SELECT MIN(accessed_at) FROM entries").fetchone()[0]
        with self._lock:
            self._total = total
            self._oldest = oldest
            self._recount_at = now + _RECOUNT_INTERVAL
        if total > self.max_bytes:
            self._evict(conn)

    def _evict(self, conn: sqlite3.Connection) -> None:
        """Drop expired rows, then least recently accessed ones, to EVICT_TO of the bound."""
        self._flush_noted()  # this process's reads count before the order is read
        total, oldest = evict_lru(conn, int(self.max_bytes * EVICT_TO), time.time())
        with self._lock:
            self._total = total
            self._oldest = oldest

    def _add_bytes(self, delta: int) -> int:
        with self._lock:
            self._total += delta
            return self._total

