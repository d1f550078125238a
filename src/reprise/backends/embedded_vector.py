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
the oldest writes (first in, first out: of the largest owner, tenant or namespace, for the
total bounds, within the scope for its own), a batch at a time, counted in ``stats().evicted`` and logged once per
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
dead: deleted, replaced, evicted or expired (in a worker thread, from a copy of the live rows:
:mod:`~reprise.backends.vector_log`).
One process owns the directory (``shared=False``).

The parts: one scope's rows and search in :mod:`~reprise.backends.vector_scope`, the
bounds and expiry sweeps over all scopes in :mod:`~reprise.backends.vector_bounds`, the
log's file in :mod:`~reprise.backends.vector_log`; this module opens, replays and ties them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reprise.backends.vector import Vector, VectorHit, VectorRecord
from reprise.backends.vector_bounds import MAX_BYTES, MAX_VECTORS, MAX_VECTORS_PER_SCOPE, BoundedScopes
from reprise.backends.vector_log import SnapshotCopy, VectorLog, frame, snapshot
from reprise.backends.vector_scope import VectorScope
from reprise.errors import BackendError

log = logging.getLogger(__name__)

_SEARCH_SWEEP, _UPSERT_SWEEP = 16, 256
_COPY_BATCH = 2048
"""Scopes whose live rows a write copies for a log rewrite (~10 ms at most)."""
"""Scopes a search (at most ~0.2 ms) or an upsert may sweep; the rest wait for the next call."""


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
        self._table: BoundedScopes | None = None
        self._compact_after = 0.0  # after a failed rewrite, wait before the next attempt
        self._copying: SnapshotCopy | None = None  # the live rows being copied for a rewrite
        self._compacting: asyncio.Future[None] | None = None  # a rewrite running in a worker thread
        self._lock = threading.RLock()  # _open holds it while a replay evicts (and writes nothing)
        self._log = VectorLog(self.directory, self._lock)

    # -- the VectorStore protocol ------------------------------------------------------

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        table = self._bounds()
        scopes = table.scopes
        now = time.time()
        if table.due and table.due[0][0] <= now:
            table.sweep(now, _SEARCH_SWEEP)
        rows = scopes.get(scope)
        return [] if rows is None else rows.search(vector, k, threshold, now)

    async def upsert(self, record: VectorRecord) -> None:
        if record.vector.shape != (self.dim,):
            raise BackendError(f"vector of shape {record.vector.shape}, index has {self.dim} dimensions")
        table = self._bounds()
        scopes = table.scopes
        now = time.time()
        table.sweep(now, _UPSERT_SWEEP)
        if not table.due or table.due[0][0] > now:  # once a backlog of expired rows is swept
            table.give_back()  # here, not in a search: it may take milliseconds
        rows = scopes.get(record.scope)
        if rows is not None and record.key not in rows.rows and rows.size >= self.max_vectors_per_scope:
            table.trim(record.scope, rows, now)
        table.put(record.scope, record.key, record.prompt, record.vector, record.expires_at)
        header = {"s": record.scope, "k": record.key, "p": record.prompt, "e": record.expires_at}
        self._log.append([frame(header, record.vector.astype(np.float32).tobytes())])
        if table.over():
            table.shed(now)
        self._maybe_compact()

    async def delete(self, scope: str, key: str) -> bool:
        table = self._bounds()
        rows = table.scopes.get(scope)
        if rows is None or not rows.remove(key):
            return False
        self._log.append([frame({"s": scope, "k": key, "d": 1}, b"")])
        rows.fit()
        table.drop_if_empty(scope, rows)
        self._maybe_compact()
        return True

    async def compacted(self) -> None:
        """Return once the log holds no more dead records than a rewrite would leave (a rewrite
        in flight finished, and another run if more than half of the log is dead by then)."""
        for _ in range(8):  # each rewrite drops what was dead when it began
            if self._compacting is None:
                self._maybe_compact()
            while self._copying is not None:
                self._copy_step()
            if self._compacting is None:
                return
            await asyncio.wait([self._compacting])

    async def aclose(self) -> None:
        if self._copying is not None:  # a rewrite not yet begun is given up
            self._copying = None
            self._log.drop_appends()
        if self._compacting is not None:  # its thread cannot be stopped: let it finish first
            await asyncio.wait([self._compacting])
        with self._lock:
            self._log.close()

    def __len__(self) -> int:
        return self._bounds().usage.rows

    def counters(self) -> tuple[int, int, int, int, int] | None:
        """(vectors, scopes, estimated bytes, evicted, expired) in O(1), for ``/metrics``; None until
        the store was first used (a scrape must not replay the log)."""
        table = self._table
        if table is None:
            return None
        return table.usage.rows, len(table.scopes), table.bytes(), table.evicted, table.expired

    def stats(self) -> IndexStats:
        """Rows, scopes and bytes held now (no scan of the rows), and what was evicted or expired."""
        table = self._bounds()
        scopes = table.scopes
        allocated = sum(
            rows.matrix.nbytes + rows.expires.nbytes + rows.seqs.nbytes
            + (0 if rows.codes is None else rows.codes.codes.nbytes)
            for rows in scopes.values()
        )
        return IndexStats(table.usage.rows, len(scopes), table.bytes(), allocated, table.evicted, table.expired)

    # -- the log ---------------------------------------------------------------------

    def _open(self) -> dict[str, VectorScope]:
        if self._table is not None:
            return self._table.scopes
        with self._lock:
            if self._table is None:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    self._table = self._replay()
                    self._log.cut_torn_tail()
                    evicted = self._table.settle(time.time())
                    if evicted or self._log.mostly_dead(self._table.usage.rows):
                        self._log.rewrite(snapshot(list(self._table.scopes.items()), self.dim))
                    for rows in self._table.scopes.values():
                        rows.settle()
                    self._log.open()
                except OSError as exc:
                    raise BackendError(f"vector index at {self.directory}: {exc}") from exc
        return self._table.scopes

    def _bounds(self) -> BoundedScopes:
        """The scopes and their bounds, the log replayed into them first if not yet done."""
        self._open()
        assert self._table is not None
        return self._table

    def _replay(self) -> BoundedScopes:
        """The scopes the log describes (rows past the bounds are kept until they are settled)."""
        table = BoundedScopes(self.directory, self.dim, self.coded_from, self.max_vectors,
                              self.max_vectors_per_scope, self.max_bytes, self._log_evicted)
        for header, vector in self._log.replay(self.dim):
            if vector is None:
                rows = table.scopes.get(header["s"])
                if rows is not None:
                    rows.remove(header["k"])
            else:
                table.put(header["s"], header["k"], header["p"], vector, header["e"], encoding=False)
        return table

    def _log_evicted(self, scope: str, keys: list[str]) -> None:
        self._log.append([frame({"s": scope, "k": key, "d": 1}, b"") for key in keys])

    def _maybe_compact(self) -> None:
        """Rewrite the log once more than half of it is dead (amortised: O(1) a record): its live
        rows copied a batch of scopes per write, then written in a worker thread (the rewrite had
        run on the event loop: 0.3-0.6 s at 50,000-100,000 live rows, every request waiting)."""
        if self._copying is not None:
            self._copy_step()
            return
        table = self._bounds()
        if self._compacting is not None or not self._log.is_open \
                or not self._log.mostly_dead(table.usage.rows) or time.monotonic() < self._compact_after:
            return
        self._log.keep_appends()
        self._copying = SnapshotCopy(list(table.scopes.items()))
        self._copy_step()

    def _copy_step(self) -> None:
        copying = self._copying
        assert copying is not None
        copying.step(_COPY_BATCH)
        if copying.finished:
            self._copying = None
            self._compacting = asyncio.get_running_loop().run_in_executor(None, self._log.rewrite, copying, self.dim)
            self._compacting.add_done_callback(self._compacted)

    def _compacted(self, done: asyncio.Future[None]) -> None:
        self._compacting = None
        failure = None if done.cancelled() else done.exception()
        if failure is not None:  # the old log, appends included, is still the one in use
            self._compact_after = time.monotonic() + 60.0
            log.warning("vector index at %s: rewriting its log failed (%s); retried in 60 s",
                        self.directory, failure)
