"""The embedded vector index's scopes in memory, kept within their bounds.

At most ``max_vectors`` rows in all, ``max_vectors_per_scope`` in one scope, and
``max_bytes`` of estimated memory (docs/semantic.md, "Bounds of the embedded index"). An
upsert past a bound evicts: expired rows first, then the oldest writes (first in, first
out, across scopes for the total bounds, within the scope for its own), a batch at a time,
logged once per burst. For the total bounds the oldest writes are taken from the largest
owner (the tenant, else the namespace, of the rows' keys: :mod:`reprise.backends.vector_owners`),
so one tenant's flood of new scopes evicts its own vectors, not another tenant's; with one
owner it is plain first in, first out.
Expired rows are removed by a sweep that only visits scopes with a
row due (a heap of each scope's earliest expiry), at most once a second; an emptied scope
is dropped with its arrays. No clock and no file here: the store passes ``now`` in and is
told of each eviction (``on_evict``) to log the deletes.
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

from reprise.backends.sign_codes import BITS, Hyperplanes, Rows
from reprise.backends.vector import Vector
from reprise.backends.vector_owners import Owners
from reprise.backends.vector_scope import ScopeUsage, VectorScope

# The store's logger: the eviction warning is the store's, and is configured by that name.
log = logging.getLogger("reprise.backends.embedded_vector")

MAX_VECTORS = 250_000
"""Default bound on rows in all scopes: ~2.4 KB a row at 512 dimensions, so ~0.6 GB."""
MAX_VECTORS_PER_SCOPE = 100_000
"""Default bound on one scope's rows (the size the search speed is measured at)."""
MAX_BYTES = 768 * 2**20
"""Default bound on the estimated memory (long prompts or wide embeddings reach it first)."""

SWEEP_INTERVAL = 1.0
"""Seconds between two sweeps of expired rows, when the last one finished its work."""
_ROW_OVERHEAD = 64
"""Bytes a row costs besides its vector, expiry, sequence, code and strings (measured)."""
_SCOPE_OVERHEAD = 1024
"""Bytes an empty scope costs: its object, arrays, lists, dict and name (measured)."""
_QUIET = 60.0
"""Seconds without an eviction that end a burst (one log line per burst)."""
_GIVE_BACK = 8 * 2**20
"""Estimated bytes freed (and an eighth of the high-water mark) before free heap pages are handed back."""


class BoundedScopes:
    """Every scope of one store, their expiry and write-order heaps, and the bounds' evictions.

    ``due`` holds, per scope, a lower bound of its earliest expiry, and ``owners`` each owner's
    scopes by oldest write (:mod:`reprise.backends.vector_owners`); an entry that no longer
    matches its scope's ``due``/``age`` is stale and skipped.
    """

    def __init__(self, directory: Path, dim: int, coded_from: int, max_vectors: int,
                 max_vectors_per_scope: int, max_bytes: int,
                 on_evict: Callable[[str, list[str]], None]) -> None:
        self.directory = directory  # named in the eviction warning
        self.dim = dim
        self.coded_from = coded_from
        self.max_vectors = max_vectors
        self.max_vectors_per_scope = max_vectors_per_scope
        self.max_bytes = max_bytes
        self.on_evict = on_evict
        self.row_bytes = 4 * dim + 8 + 8 + BITS // 8 + _ROW_OVERHEAD  # vector, expiry, seq, code
        self.scopes: dict[str, VectorScope] = {}
        self.usage = ScopeUsage()
        self.owners = Owners(self.usage, self.row_bytes, _SCOPE_OVERHEAD)
        self.due: list[tuple[float, str]] = []  # (a scope's earliest expiry, at most), scope
        self.evicted = self.expired = 0
        self._planes: Hyperplanes | None = None
        self._seq = 0
        self._next_sweep = 0.0
        self._unlogged = 0
        self._burst_until = 0.0
        self._high = 0  # estimated bytes at their highest since memory was last handed back

    def bytes(self) -> int:
        """Estimated memory of the rows and scopes, what ``max_bytes`` bounds."""
        return self.usage.rows * self.row_bytes + self.usage.text + len(self.scopes) * _SCOPE_OVERHEAD

    def over(self) -> bool:
        """Past ``max_vectors`` or ``max_bytes``: :meth:`shed` brings it back under."""
        return self.usage.rows > self.max_vectors or self.bytes() > self.max_bytes

    def put(self, name: str, key: str, prompt: str, vector: Vector,
            expires_at: float | None, encoding: bool = True) -> None:
        scopes = self.scopes
        rows = scopes.get(name)
        if rows is None:
            if self._planes is None:
                self._planes = Hyperplanes(self.dim)
            rows = scopes[name] = VectorScope(self.dim, self._planes, self.coded_from, self.owners.of_new_scope(key),
                                              self.max_vectors_per_scope, encoding)
        self._seq += 1
        rows.put(key, prompt, vector, expires_at, self._seq)
        self.owners.grew(rows.usage)
        if expires_at is not None and expires_at < rows.due:
            rows.due = expires_at
            heapq.heappush(self.due, (expires_at, name))
            if len(self.due) > 2 * len(scopes) + 256:
                self._reheap()  # entries of dropped scopes or superseded ones piled up
        if rows.age < 0:
            rows.age = self._seq
            self.owners.aged(rows.usage, self._seq, name)
            if self.owners.piled_up(len(scopes)):
                self._reheap()

    def sweep(self, now: float, budget: int, force: bool = False) -> None:
        """Remove expired rows from up to ``budget`` scopes that have one due."""
        due = self.due
        if not due or due[0][0] > now or (now < self._next_sweep and not force):
            return
        self._high = max(self._high, self.bytes())  # the peak is now, before this frees rows
        swept = 0
        while due and due[0][0] <= now and swept < budget:
            key, name = heapq.heappop(due)
            rows = self.scopes.get(name)
            if rows is None or rows.due != key:
                continue  # a dropped scope, or an entry superseded by a sooner one
            rows.due = math.inf
            self._expire(name, rows, now)
            swept += 1
        # more to do: the next call goes on
        self._next_sweep = now if due and due[0][0] <= now else now + SWEEP_INTERVAL

    def trim(self, name: str, rows: VectorScope, now: float) -> None:
        """Make room for one row in a full scope: its expired rows, else its oldest."""
        self._expire(name, rows, now)
        excess = rows.size - self.max_vectors_per_scope + 1
        if excess > 0:
            self._evict(name, rows, rows.oldest(excess + _slack(self.max_vectors_per_scope, 1)))
            self.drop_if_empty(name, rows)
            self._note(f"max_vectors_per_scope={self.max_vectors_per_scope} in one scope", now)

    def shed(self, now: float) -> None:
        """Back under ``max_vectors`` and ``max_bytes``: expired rows first, then the oldest writes
        of the largest owner (by the bound exceeded; :mod:`reprise.backends.vector_owners`)."""
        self._high = max(self._high, self.bytes())
        self.sweep(now, sys.maxsize, force=True)
        usage, owners = self.usage, self.owners
        rows_target = self.max_vectors - _slack(self.max_vectors, 1)
        bytes_target = self.max_bytes - _slack(self.max_bytes, self.row_bytes)
        while (usage.rows > rows_target or self.bytes() > bytes_target) and usage.rows > 1:
            owner = owners.largest(by_bytes=usage.rows <= rows_target)
            if owner is None or not owner.ages:
                self._reheap()  # no entry left for a scope (not expected): rebuild and try once more
                owner = owners.largest(by_bytes=usage.rows <= rows_target)
                if owner is None or not owner.ages:
                    break
            over_bytes = math.ceil((self.bytes() - bytes_target) * usage.rows / self.bytes())
            need = min(max(usage.rows - rows_target, over_bytes, 1), usage.rows - 1)
            if len(owners) > 1:  # half of the largest at most, then the largest is looked for again
                need = min(need, max(1, owner.rows // 2))
            self._evict_oldest(owner, need)
        self._note(f"max_vectors={self.max_vectors}, max_bytes={self.max_bytes}", now)
        self.give_back()

    def _evict_oldest(self, owner: ScopeUsage, need: int) -> None:
        """Evict up to ``need`` of ``owner``'s oldest rows, scope after scope, oldest first."""
        owners, before = self.owners, self.usage.rows
        while self.usage.rows > before - need:
            found = owners.oldest_scope(owner, self.scopes)
            if found is None:
                return
            key, name = found
            rows = self.scopes[name]
            rows.age = rows.first_seq()
            if rows.age == key:  # this scope holds the owner's oldest row: evict up to its next scope's
                left = need - (before - self.usage.rows)
                self._evict(name, rows, rows.oldest(left, owner.ages[0][0] if owner.ages else None))
                if self.drop_if_empty(name, rows):
                    continue
                rows.age = rows.first_seq()
            owners.aged(owner, rows.age, name)

    def settle(self, now: float) -> int:
        """After a replay: expired rows and empty scopes dropped, the bounds applied; the rows evicted."""
        for name, rows in list(self.scopes.items()):
            rows.due = math.inf
            self._expire(name, rows, now)
            if name in self.scopes and rows.size > self.max_vectors_per_scope:
                self._evict(name, rows, rows.oldest(rows.size - self.max_vectors_per_scope))
        self._note(f"max_vectors_per_scope={self.max_vectors_per_scope}, lowered since the log was written", now)
        self._reheap()
        if self.over():
            self.shed(now)
        return self.evicted

    def give_back(self) -> None:
        """Once enough was freed, return the heap's free pages to the OS.

        Rows are small allocations: glibc keeps them for reuse when freed, so without this
        the process stays at its peak size after a wave of short-lived scopes (measured:
        docs/semantic.md). 1-25 ms a call (100-800 MB heaps), only once the index shrank by
        an eighth and :data:`_GIVE_BACK` since the last call: a steady index reuses what it frees.
        """
        now = self.bytes()
        if self._high - now >= max(_GIVE_BACK, self._high // 8):
            self._high = now
            scopes = list(self.scopes.items())
            self.scopes.clear()  # a dict keeps its largest table until cleared
            self.scopes.update(scopes)
            self._reheap()
            trim = _malloc_trim()
            if trim is not None:
                trim(0)

    def drop_if_empty(self, name: str, rows: VectorScope) -> bool:
        if rows.size:
            return False
        if self.scopes.get(name) is rows:
            del self.scopes[name]  # its arrays go with it; heap entries for it go stale
            self.owners.scope_dropped(rows.usage)
        return True

    def _expire(self, name: str, rows: VectorScope, now: float) -> None:
        expired = rows.expired(now)
        if len(expired):
            rows.drop(expired)
            self.expired += len(expired)  # no record needed: a replay drops them too
        if not self.drop_if_empty(name, rows):
            first = rows.first_due()
            if first < rows.due:
                rows.due = first
                heapq.heappush(self.due, (first, name))

    def _evict(self, name: str, rows: VectorScope, victims: Rows) -> None:
        keys = rows.drop(victims)
        self.evicted += len(keys)
        self._unlogged += len(keys)
        self.on_evict(name, keys)

    def _note(self, bound: str, now: float) -> None:
        """Log the first eviction of a burst; the rest are counted in ``stats().evicted``."""
        if self._unlogged and now >= self._burst_until:
            log.warning("vector index at %s is full (%s): evicted %d of the oldest vectors; "
                        "evictions go on being counted in stats().evicted, logged again after "
                        "%.0f s without one", self.directory, bound, self._unlogged, _QUIET)
        if self._unlogged:
            self._burst_until = now + _QUIET
        self._unlogged = 0

    def _reheap(self) -> None:
        scopes = self.scopes
        self.due = [(rows.due, name) for name, rows in scopes.items() if rows.due < math.inf]
        heapq.heapify(self.due)
        self.owners.rebuild(scopes)


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
