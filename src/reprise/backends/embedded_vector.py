"""An embedded vector index: one NumPy matrix per scope, persisted as an append-only log.

Scopes partition the rows, so a search only touches one conversation context's entries.
A small scope (below ``coded_from`` rows, 4,096 by default) is searched by brute force:
a matrix-vector product over its rows, exact, 0.1 ms at 4,096 x 512. A larger scope also
keeps a 512-bit sign code per row (:mod:`reprise.backends.sign_codes`); a search scans
the codes with a SIMD Hamming kernel and rescores the rows under the threshold's cutoff
exactly with their float32 vectors: 0.3-0.5 ms at 100,000 x 512 where brute force takes
8-35 ms (docs/semantic.md, ``bench/semantic_speed.py``). Every reported score is the
exact cosine; a row at or above the threshold is missed with probability below 1e-9.

Bounds (docs/semantic.md, "Bounds of the embedded index"): at most ``max_vectors`` rows
in all, ``max_vectors_per_scope`` in one scope, and ``max_bytes`` of estimated memory
(:meth:`LocalVectorStore.stats`). An upsert past a bound evicts: expired rows first, then
the oldest writes (first in, first out, across scopes for the total bounds, within the
scope for its own), a batch at a time, counted in ``stats().evicted`` and logged once per
burst. Expired rows are removed from memory by a sweep that only visits scopes with a
row due (a heap of each scope's earliest expiry), at most once a second, from upserts
and searches; an emptied scope is dropped with its arrays. A scope starts with room for
one row and grows (doubling, then by a quarter from 4,096 rows), and shrinks to half
when a quarter full.

Persistence: every upsert and delete (an eviction too) appends one framed record to
``{directory}/vectors.log`` (``u32 header length | header JSON | float32 vector``).
The log is the only file: it is replayed when the store is first used (the codes are
rebuilt from it in one batch: 1-2 s for 100,000 rows here, replay included; rows
expired by then are dropped, the bounds applied), a torn last record is cut off, and
the log is rewritten with only the live rows, oldest first, when more than half of it is
dead: deleted, replaced, evicted or expired.
One process owns the directory (``shared=False``).
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import logging
import math
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import orjson

from reprise.backends.sign_codes import BITS, Hyperplanes, Rows, SignCodes, dot_rows
from reprise.backends.vector import Vector, VectorHit, VectorRecord
from reprise.errors import BackendError

log = logging.getLogger(__name__)

_FRAME = struct.Struct("<I")
_LOG = "vectors.log"

MAX_VECTORS = 250_000
"""Default bound on rows in all scopes: ~2.4 KB a row at 512 dimensions, so ~0.6 GB."""
MAX_VECTORS_PER_SCOPE = 100_000
"""Default bound on one scope's rows (the size the search speed is measured at)."""
MAX_BYTES = 768 * 2**20
"""Default bound on the estimated memory (long prompts or wide embeddings reach it first)."""

SWEEP_INTERVAL = 1.0
"""Seconds between two sweeps of expired rows, when the last one finished its work."""
_SEARCH_SWEEP, _UPSERT_SWEEP = 16, 256
"""Scopes a search (at most ~0.2 ms) or an upsert may sweep; the rest wait for the next call."""
_ROW_OVERHEAD = 64
"""Bytes a row costs besides its vector, expiry, sequence, code and strings (measured)."""
_SCOPE_OVERHEAD = 1024
"""Bytes an empty scope costs: its object, arrays, lists, dict and name (measured)."""
_QUIET = 60.0
"""Seconds without an eviction that end a burst (one log line per burst)."""
_GIVE_BACK = 8 * 2**20
"""Estimated bytes freed (and an eighth of the high-water mark) before free heap pages are handed back."""


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What the index holds, from its own accounting (cheap: no scan of the rows)."""

    vectors: int
    scopes: int
    bytes: int
    """Estimated memory of the rows and scopes, what ``max_bytes`` bounds."""
    allocated: int
    """Bytes of the NumPy arrays as allocated, spare capacity included."""
    evicted: int
    """Rows evicted by a bound since the store was opened."""
    expired: int
    """Expired rows removed from memory since the store was opened."""


@dataclass(slots=True)
class _Usage:
    """Totals shared by every scope of a store, kept in step on each change."""

    rows: int = 0
    text: int = 0  # bytes of the keys' and prompts' str objects


@dataclass(slots=True, eq=False)
class _Scope:
    """The rows of one scope; rows beyond ``size`` are spare capacity.

    Once the scope holds ``coded_from`` rows it also keeps their sign codes, and a search
    scans those instead of the whole matrix (``codes`` is None below that size, and while
    the log is replayed: :meth:`encode` then builds them in one batch). ``seqs`` orders
    rows by write (for eviction); ``due`` and ``age`` are the keys of the scope's entries
    in the store's heaps, lower bounds of its earliest expiry and oldest ``seqs``.
    """

    dim: int
    planes: Hyperplanes
    coded_from: int
    usage: _Usage
    limit: int
    encoding: bool = True
    matrix: npt.NDArray[np.float32] = field(init=False)
    expires: npt.NDArray[np.float64] = field(init=False)
    seqs: npt.NDArray[np.int64] = field(init=False)
    codes: SignCodes | None = None
    size: int = 0
    keys: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    due: float = math.inf
    age: int = -1

    def __post_init__(self) -> None:
        self.matrix = np.zeros((1, self.dim), dtype=np.float32)
        self.expires = np.full(1, np.inf)
        self.seqs = np.zeros(1, dtype=np.int64)

    def put(self, key: str, prompt: str, vector: Vector, expires_at: float | None, seq: int) -> None:
        row = self.rows.get(key)
        if row is None:
            if self.size == len(self.matrix):
                self._resize(self._grown())
            row = self.size
            self.size += 1
            self.keys.append(key)
            self.prompts.append(prompt)
            self.rows[key] = row
            self.usage.rows += 1
            self.usage.text += sys.getsizeof(key) + sys.getsizeof(prompt)
        else:
            self.usage.text += sys.getsizeof(prompt) - sys.getsizeof(self.prompts[row])
            self.prompts[row] = prompt
        self.expires[row] = np.inf if expires_at is None else expires_at
        self.seqs[row] = seq
        self.matrix[row] = vector
        if self.codes is not None:
            self.codes.set(row, self.matrix[row])
        elif self.encoding and self.size >= self.coded_from:
            self.encode()

    def remove(self, key: str) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        self.usage.rows -= 1
        self.usage.text -= sys.getsizeof(key) + sys.getsizeof(self.prompts[row])
        last = self.size - 1
        if row != last:  # move the last row into the hole
            self.matrix[row] = self.matrix[last]
            self.expires[row] = self.expires[last]
            self.seqs[row] = self.seqs[last]
            self.keys[row], self.prompts[row] = self.keys[last], self.prompts[last]
            self.rows[self.keys[row]] = row
            if self.codes is not None:
                self.codes.move(last, row)
        self.keys.pop()
        self.prompts.pop()
        self.size = last
        return True

    def drop(self, rows: Rows) -> list[str]:
        """Remove ``rows`` (distinct row numbers) and return their keys; shrinks if mostly empty."""
        keys = [self.keys[row] for row in rows.tolist()]
        if len(keys) == self.size:  # all of them: the scope is dropped next, its arrays with it
            self.usage.rows -= self.size
            self.usage.text -= sum(map(sys.getsizeof, self.keys)) + sum(map(sys.getsizeof, self.prompts))
            self.keys, self.prompts, self.rows, self.size = [], [], {}, 0
            return keys
        if 4 * len(keys) <= self.size:
            for key in keys:
                self.remove(key)
        else:  # most rows go: rebuild the survivors in one pass
            self.usage.rows -= len(keys)
            self.usage.text -= sum(sys.getsizeof(key) for key in keys)
            self.usage.text -= sum(sys.getsizeof(self.prompts[row]) for row in rows.tolist())
            keep = np.ones(self.size, dtype=bool)
            keep[rows] = False
            kept = np.flatnonzero(keep)
            for array in (self.matrix, self.expires, self.seqs):
                array[: len(kept)] = array[kept]
            if self.codes is not None:
                self.codes.keep(kept)
            self.keys = [self.keys[row] for row in kept.tolist()]
            self.prompts = [self.prompts[row] for row in kept.tolist()]
            self.rows = {key: row for row, key in enumerate(self.keys)}
            self.size = len(kept)
        self.fit()
        return keys

    def fit(self) -> None:
        """Give memory back once at most a quarter of the capacity is used (to half of it)."""
        if self.size and 4 * self.size <= len(self.matrix):
            self._resize(2 * self.size)

    def expired(self, now: float) -> Rows:
        return np.flatnonzero(self.expires[: self.size] <= now)

    def oldest(self, n: int, before: int | None = None) -> Rows:
        """Up to ``n`` of the earliest written rows (only those written ``before``, if given; at least one)."""
        seqs = self.seqs[: self.size]
        if before is not None:
            n = max(1, min(n, int(np.count_nonzero(seqs < before))))
        if n >= self.size:
            return np.arange(self.size)
        return np.argpartition(seqs, n - 1)[:n]

    def first_due(self) -> float:
        return float(self.expires[: self.size].min()) if self.size else math.inf

    def first_seq(self) -> int:
        return int(self.seqs[: self.size].min())

    def encode(self) -> None:
        """Start keeping sign codes if the scope is large enough (after a replay, or on growth)."""
        self.encoding = True
        if self.codes is None and self.size >= self.coded_from:
            self.codes = SignCodes(self.planes, self.matrix[: self.size], len(self.matrix))

    def search(self, vector: Vector, k: int, threshold: float, now: float) -> list[VectorHit]:
        if self.size == 0:
            return []
        rows = None if self.codes is None else self.codes.near(vector, threshold, self.size)
        if rows is None or 4 * len(rows) > self.size:  # brute force: small scope, or low threshold
            rows = np.arange(self.size)
            scores = dot_rows(self.matrix[: self.size], vector)
        else:  # rescore the code scan's candidates exactly with their float32 rows
            scores = dot_rows(self.matrix[rows], vector)
        keep = (scores >= threshold) & (self.expires[rows] > now)
        rows, scores = rows[keep], scores[keep]
        if len(rows) > k:
            top = np.argpartition(scores, -k)[-k:]
            rows, scores = rows[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return [
            VectorHit(self.keys[row], self.prompts[row], float(min(1.0, score)))
            for row, score in zip(rows[order].tolist(), scores[order].tolist(), strict=True)
        ]

    def settle(self) -> None:
        """After a replay: spare capacity cut to a quarter, codes built for a large scope."""
        if len(self.matrix) > self.size + self.size // 4 + 1:
            self._resize(self.size + self.size // 4 + 1)
        self.encode()

    def _grown(self) -> int:
        capacity = len(self.matrix)
        fast = capacity < 4096 or not self.encoding  # doubling while the log is replayed
        grown = 2 * capacity if fast else capacity + capacity // 4
        return max(self.size + 1, min(grown, self.limit))

    def _resize(self, capacity: int) -> None:
        matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        expires = np.full(capacity, np.inf)
        expires[: self.size] = self.expires[: self.size]
        seqs = np.zeros(capacity, dtype=np.int64)
        seqs[: self.size] = self.seqs[: self.size]
        self.matrix, self.expires, self.seqs = matrix, expires, seqs
        if self.codes is not None:
            self.codes.resize(capacity)


class LocalVectorStore:
    """Embedded vector store for ``type: local-semantic``; opens its directory lazily.

    ``max_vectors``, ``max_vectors_per_scope`` and ``max_bytes`` bound it (module
    docstring); :meth:`stats` tells what it holds.
    """

    name = "local-vectors"

    def __init__(self, directory: str | os.PathLike[str], dim: int, *, coded_from: int = 4096,
                 max_vectors: int = MAX_VECTORS, max_vectors_per_scope: int = MAX_VECTORS_PER_SCOPE,
                 max_bytes: int = MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.dim = dim
        self.coded_from = coded_from
        self.max_vectors = max_vectors
        self.max_vectors_per_scope = max_vectors_per_scope
        self.max_bytes = max_bytes
        self._row_bytes = 4 * dim + 8 + 8 + BITS // 8 + _ROW_OVERHEAD  # vector, expiry, seq, code
        self._planes: Hyperplanes | None = None
        self._scopes: dict[str, _Scope] | None = None
        self._usage = _Usage()
        self._due: list[tuple[float, str]] = []  # (a scope's earliest expiry, at most), scope
        self._ages: list[tuple[int, str]] = []  # (a scope's oldest write, at most), scope
        self._seq = 0
        self._next_sweep = 0.0
        self._evicted = self._expired = self._unlogged = 0
        self._burst_until = 0.0
        self._high = 0  # estimated bytes at their highest since memory was last handed back
        self._compact_after = 0.0  # after a failed rewrite, wait before the next attempt
        self._log: IO[bytes] | None = None
        self._records = 0  # in the log; those not behind a row in memory are dead
        self._lock = threading.RLock()  # _open holds it while a replay evicts (and writes nothing)

    # -- the VectorStore protocol ------------------------------------------------------

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        scopes = self._open()
        now = time.time()
        if self._due and self._due[0][0] <= now:
            self._sweep(now, _SEARCH_SWEEP)
        rows = scopes.get(scope)
        return [] if rows is None else rows.search(vector, k, threshold, now)

    async def upsert(self, record: VectorRecord) -> None:
        if record.vector.shape != (self.dim,):
            raise BackendError(f"vector of shape {record.vector.shape}, index has {self.dim} dimensions")
        scopes = self._open()
        now = time.time()
        self._sweep(now, _UPSERT_SWEEP)
        if not self._due or self._due[0][0] > now:  # once a backlog of expired rows is swept
            self._give_back()  # here, not in a search: it may take milliseconds
        rows = scopes.get(record.scope)
        if rows is not None and record.key not in rows.rows and rows.size >= self.max_vectors_per_scope:
            self._trim(record.scope, rows, now)
        self._put(scopes, record.scope, record.key, record.prompt, record.vector, record.expires_at)
        header = {"s": record.scope, "k": record.key, "p": record.prompt, "e": record.expires_at}
        self._write([_frame(header, record.vector.astype(np.float32).tobytes())])
        if self._usage.rows > self.max_vectors or self._bytes() > self.max_bytes:
            self._shed(now)
        self._maybe_compact()

    async def delete(self, scope: str, key: str) -> bool:
        rows = self._open().get(scope)
        if rows is None or not rows.remove(key):
            return False
        self._write([_frame({"s": scope, "k": key, "d": 1}, b"")])
        rows.fit()
        self._drop_if_empty(scope, rows)
        self._maybe_compact()
        return True

    async def aclose(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __len__(self) -> int:
        self._open()
        return self._usage.rows

    def stats(self) -> IndexStats:
        """Rows, scopes and bytes held now (no scan of the rows), and what was evicted or expired."""
        scopes = self._open()
        allocated = sum(
            rows.matrix.nbytes + rows.expires.nbytes + rows.seqs.nbytes
            + (0 if rows.codes is None else rows.codes.codes.nbytes)
            for rows in scopes.values()
        )
        return IndexStats(self._usage.rows, len(scopes), self._bytes(), allocated, self._evicted, self._expired)

    # -- bounds and expiry -------------------------------------------------------------

    def _bytes(self) -> int:
        scopes = 0 if self._scopes is None else len(self._scopes)
        return self._usage.rows * self._row_bytes + self._usage.text + scopes * _SCOPE_OVERHEAD

    def _put(self, scopes: dict[str, _Scope], name: str, key: str, prompt: str, vector: Vector,
             expires_at: float | None, encoding: bool = True) -> None:
        rows = scopes.get(name)
        if rows is None:
            if self._planes is None:
                self._planes = Hyperplanes(self.dim)
            rows = scopes[name] = _Scope(self.dim, self._planes, self.coded_from, self._usage,
                                         self.max_vectors_per_scope, encoding)
        self._seq += 1
        rows.put(key, prompt, vector, expires_at, self._seq)
        if expires_at is not None and expires_at < rows.due:
            rows.due = expires_at
            heapq.heappush(self._due, (expires_at, name))
            if len(self._due) > 2 * len(scopes) + 256:
                self._reheap(scopes)  # entries of dropped scopes or superseded ones piled up
        if rows.age < 0:
            rows.age = self._seq
            heapq.heappush(self._ages, (self._seq, name))
            if len(self._ages) > 2 * len(scopes) + 256:
                self._reheap(scopes)

    def _sweep(self, now: float, budget: int, force: bool = False) -> None:
        """Remove expired rows from up to ``budget`` scopes that have one due."""
        due = self._due
        if not due or due[0][0] > now or (now < self._next_sweep and not force):
            return
        assert self._scopes is not None
        self._high = max(self._high, self._bytes())  # the peak is now, before this frees rows
        swept = 0
        while due and due[0][0] <= now and swept < budget:
            key, name = heapq.heappop(due)
            rows = self._scopes.get(name)
            if rows is None or rows.due != key:
                continue  # a dropped scope, or an entry superseded by a sooner one
            rows.due = math.inf
            self._expire(name, rows, now)
            swept += 1
        # more to do: the next call goes on
        self._next_sweep = now if due and due[0][0] <= now else now + SWEEP_INTERVAL

    def _expire(self, name: str, rows: _Scope, now: float) -> None:
        expired = rows.expired(now)
        if len(expired):
            rows.drop(expired)
            self._expired += len(expired)  # no record needed: a replay drops them too
        if not self._drop_if_empty(name, rows):
            first = rows.first_due()
            if first < rows.due:
                rows.due = first
                heapq.heappush(self._due, (first, name))

    def _trim(self, name: str, rows: _Scope, now: float) -> None:
        """Make room for one row in a full scope: its expired rows, else its oldest."""
        self._expire(name, rows, now)
        excess = rows.size - self.max_vectors_per_scope + 1
        if excess > 0:
            self._evict(name, rows, rows.oldest(excess + _slack(self.max_vectors_per_scope, 1)))
            self._drop_if_empty(name, rows)
            self._note(f"max_vectors_per_scope={self.max_vectors_per_scope} in one scope", now)

    def _shed(self, now: float) -> None:
        """Back under ``max_vectors`` and ``max_bytes``: expired rows first, then the oldest writes."""
        self._high = max(self._high, self._bytes())
        self._sweep(now, sys.maxsize, force=True)
        assert self._scopes is not None
        usage, ages = self._usage, self._ages
        rows_target = self.max_vectors - _slack(self.max_vectors, 1)
        bytes_target = self.max_bytes - _slack(self.max_bytes, self._row_bytes)
        while (usage.rows > rows_target or self._bytes() > bytes_target) and usage.rows > 1 and ages:
            key, name = heapq.heappop(ages)
            rows = self._scopes.get(name)
            if rows is None or rows.age != key:
                continue
            rows.age = rows.first_seq()
            if rows.age == key:  # this scope holds the oldest row of all: evict its rows up to the next scope's
                over_bytes = math.ceil((self._bytes() - bytes_target) * usage.rows / self._bytes())
                need = min(max(usage.rows - rows_target, over_bytes, 1), usage.rows - 1)
                self._evict(name, rows, rows.oldest(need, ages[0][0] if ages else None))
                if self._drop_if_empty(name, rows):
                    continue
                rows.age = rows.first_seq()
            heapq.heappush(ages, (rows.age, name))
        self._note(f"max_vectors={self.max_vectors}, max_bytes={self.max_bytes}", now)
        self._give_back()

    def _evict(self, name: str, rows: _Scope, victims: Rows) -> None:
        keys = rows.drop(victims)
        self._evicted += len(keys)
        self._unlogged += len(keys)
        self._write([_frame({"s": name, "k": key, "d": 1}, b"") for key in keys])

    def _note(self, bound: str, now: float) -> None:
        """Log the first eviction of a burst; the rest are counted in ``stats().evicted``."""
        if self._unlogged and now >= self._burst_until:
            log.warning("vector index at %s is full (%s): evicted %d of the oldest vectors; "
                        "evictions go on being counted in stats().evicted, logged again after "
                        "%.0f s without one", self.directory, bound, self._unlogged, _QUIET)
        if self._unlogged:
            self._burst_until = now + _QUIET
        self._unlogged = 0

    def _give_back(self) -> None:
        """Once enough was freed, return the heap's free pages to the OS.

        Rows are small allocations: glibc keeps them for reuse when freed, so without this
        the process stays at its peak size after a wave of short-lived scopes (measured:
        docs/semantic.md). 1-25 ms a call (100-800 MB heaps), only once the index shrank by
        an eighth and :data:`_GIVE_BACK` since the last call: a steady index reuses what it frees.
        """
        now = self._bytes()
        if self._high - now >= max(_GIVE_BACK, self._high // 8):
            self._high = now
            assert self._scopes is not None
            scopes = list(self._scopes.items())
            self._scopes.clear()  # a dict keeps its largest table until cleared
            self._scopes.update(scopes)
            self._reheap(self._scopes)
            trim = _malloc_trim()
            if trim is not None:
                trim(0)

    def _drop_if_empty(self, name: str, rows: _Scope) -> bool:
        if rows.size:
            return False
        assert self._scopes is not None
        if self._scopes.get(name) is rows:
            del self._scopes[name]  # its arrays go with it; heap entries for it go stale
        return True

    def _reheap(self, scopes: dict[str, _Scope]) -> None:
        self._due = [(rows.due, name) for name, rows in scopes.items() if rows.due < math.inf]
        self._ages = [(rows.age, name) for name, rows in scopes.items() if rows.age >= 0]
        heapq.heapify(self._due)
        heapq.heapify(self._ages)

    # -- the log ---------------------------------------------------------------------

    def _open(self) -> dict[str, _Scope]:
        if self._scopes is not None:
            return self._scopes
        with self._lock:
            if self._scopes is None:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    path = self.directory / _LOG
                    self._scopes, end = self._replay(path)
                    if path.exists() and path.stat().st_size > end:
                        os.truncate(path, end)  # a torn last write: appends must not land behind it
                    evicted = self._settle(time.time())
                    if evicted or self._mostly_dead():
                        self._rewrite()
                    for rows in self._scopes.values():
                        rows.settle()
                    self._log = open(path, "ab")  # noqa: SIM115  (closed in aclose)
                except OSError as exc:
                    raise BackendError(f"vector index at {self.directory}: {exc}") from exc
        return self._scopes

    def _replay(self, path: Path) -> tuple[dict[str, _Scope], int]:
        """The scopes the log describes, and where its last whole record ends."""
        scopes: dict[str, _Scope] = {}
        if not path.exists():
            return scopes, 0
        data = path.read_bytes()
        offset, width = 0, self.dim * 4
        while offset + _FRAME.size <= len(data):
            (length,) = _FRAME.unpack_from(data, offset)
            start = offset + _FRAME.size
            try:
                header = orjson.loads(data[start : start + length])
            except orjson.JSONDecodeError:
                break  # a torn last write: keep what came before
            deleted = bool(header.get("d"))
            end = start + length + (0 if deleted else width)
            if end > len(data):
                break
            self._records += 1
            if deleted:
                rows = scopes.get(header["s"])
                if rows is not None:
                    rows.remove(header["k"])
            else:
                vector = np.frombuffer(data, dtype=np.float32, count=self.dim, offset=start + length)
                self._put(scopes, header["s"], header["k"], header["p"], vector, header["e"], encoding=False)
            offset = end
        return scopes, offset

    def _settle(self, now: float) -> int:
        """After a replay: expired rows and empty scopes dropped, the bounds applied; the rows evicted."""
        assert self._scopes is not None
        for name, rows in list(self._scopes.items()):
            rows.due = math.inf
            self._expire(name, rows, now)
            if name in self._scopes and rows.size > self.max_vectors_per_scope:
                self._evict(name, rows, rows.oldest(rows.size - self.max_vectors_per_scope))
        self._note(f"max_vectors_per_scope={self.max_vectors_per_scope}, lowered since the log was written", now)
        self._reheap(self._scopes)
        if self._usage.rows > self.max_vectors or self._bytes() > self.max_bytes:
            self._shed(now)
        return self._evicted

    def _maybe_compact(self) -> None:
        """Rewrite the log once more than half of it is dead (amortised: O(1) a record)."""
        if self._log is None or not self._mostly_dead() or time.monotonic() < self._compact_after:
            return
        with self._lock:
            self._log.close()
            self._log = None
            try:
                self._rewrite()
            except BackendError:
                self._compact_after = time.monotonic() + 60.0
                raise
            finally:
                try:
                    self._log = open(self.directory / _LOG, "ab")  # noqa: SIM115  (closed in aclose)
                except OSError as exc:
                    raise BackendError(f"vector index at {self.directory}: {exc}") from exc

    def _rewrite(self) -> None:
        """Rewrite the log with only the live rows, in write order (eviction stays first in, first out)."""
        assert self._scopes is not None
        tmp = self.directory / (_LOG + ".tmp")
        scopes = list(self._scopes.items())
        seqs = np.concatenate([rows.seqs[: rows.size] for _, rows in scopes] or [np.zeros(0, np.int64)])
        owners = np.repeat(np.arange(len(scopes)), [rows.size for _, rows in scopes])
        places = np.concatenate([np.arange(rows.size) for _, rows in scopes] or [np.zeros(0, np.intp)])
        order = np.argsort(seqs, kind="stable")
        try:
            with open(tmp, "wb", buffering=2**20) as out:
                for owner, row in zip(owners[order].tolist(), places[order].tolist(), strict=True):
                    name, rows = scopes[owner]
                    expires = float(rows.expires[row])
                    header = {"s": name, "k": rows.keys[row], "p": rows.prompts[row],
                              "e": None if expires == math.inf else expires}
                    out.write(_frame(header, rows.matrix[row].tobytes()))
            os.replace(tmp, self.directory / _LOG)
        except OSError as exc:
            raise BackendError(f"vector index at {self.directory}: {exc}") from exc
        self._records = self._usage.rows

    def _mostly_dead(self) -> bool:
        """More than half of the log's records are deleted, replaced, evicted or expired rows."""
        return 2 * (self._records - self._usage.rows) > self._records > 64

    def _write(self, frames: list[bytes]) -> None:
        if not frames:
            return
        with self._lock:
            if self._log is None:
                return  # replaying, or closed: a rewrite follows, or nothing is kept
            self._records += len(frames)
            try:
                self._log.write(b"".join(frames))
                self._log.flush()
            except OSError as exc:
                raise BackendError(f"vector index at {self.directory}: {exc}") from exc


def _slack(bound: int, row: int) -> int:
    """Room made below a bound (of rows, or bytes with ``row`` bytes a row) when it is reached,
    so that evictions come in batches: 1/256 of it, at most 256 rows."""
    return min(256 * row, bound // 256)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library (macOS, musl)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def _frame(header: Mapping[str, object], vector: bytes) -> bytes:
    head = orjson.dumps(header)
    return _FRAME.pack(len(head)) + head + vector
