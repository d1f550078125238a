"""Who owns the embedded index's scopes, and whose oldest write goes first when it is full.

An owner is the tenant, else the namespace, of a scope's keys (:func:`~reprise.core.key_owner.owner_of`;
a scope's keys share their namespace, which its hash covers, so a scope has one owner). When a
total bound is exceeded, the store (:mod:`reprise.backends.vector_bounds`) evicts the oldest writes
of the **largest** owner (by the measure of the bound: rows, or estimated bytes): found from
outside, one tenant's flood of new scopes evicted every other tenant's vectors (their semantic
hits). With one owner that is plain first in, first out.

Each owner keeps its totals and a heap of its scopes' oldest writes; two heaps over the owners
(by rows, by bytes) find the largest. They are lazy: an owner grown by more than 1% since its
last entry gets a new one, superseding the earlier (dropped when popped); an owner whose size
moved since its entry is put back in line at its current size when that entry is popped. So the
largest is found to within 1%, for about one heap push per hundred writes. A first version
instead passed over the owners within an equal share one by one: 20,000 namespaces of one row
each made every upsert of a flooding owner 5x slower (32 -> 160 us).
"""

from __future__ import annotations

import heapq

from reprise.backends.vector_scope import ScopeUsage, VectorScope
from reprise.core.key_owner import owner_of


class Owners:
    """The owners of one store's scopes (``total`` is the store's totals)."""

    def __init__(self, total: ScopeUsage, row_bytes: int, scope_bytes: int) -> None:
        self.total = total
        self.row_bytes = row_bytes
        self.scope_bytes = scope_bytes
        self.by_name: dict[str, ScopeUsage] = {}
        self.by_rows: list[tuple[int, str]] = []  # (-rows, owner), lazy
        self.by_bytes: list[tuple[int, str]] = []  # (-estimated bytes, owner), lazy
        self.entries = 0  # entries in the owners' own age heaps, stale ones included

    def __len__(self) -> int:
        return len(self.by_name)

    def of_new_scope(self, key: str) -> ScopeUsage:
        """The totals a new scope whose first key is ``key`` adds to."""
        name = owner_of(key)
        owner = self.by_name.get(name)
        if owner is None:
            owner = self.by_name[name] = ScopeUsage(parent=self.total, owner=name)
            if len(self.by_name) == 2:  # the owner alone until now was never ranked (grew skips it)
                self._resize_heaps()
        owner.scopes += 1
        return owner

    def scope_dropped(self, owner: ScopeUsage) -> None:
        owner.scopes -= 1
        if not owner.scopes and self.by_name.get(owner.owner) is owner:
            del self.by_name[owner.owner]

    def bytes_of(self, owner: ScopeUsage) -> int:
        """Estimated memory of ``owner``'s rows and scopes (as the store's, which bounds ``max_bytes``)."""
        return owner.rows * self.row_bytes + owner.text + owner.scopes * self.scope_bytes

    def grew(self, owner: ScopeUsage) -> None:
        """``owner`` was written to: its place in the size heaps moves up (once it grew 1%)."""
        rows, size = owner.ranked
        if len(self.by_name) > 1 and (owner.rows > rows + (rows >> 7) or self.bytes_of(owner) > size + (size >> 7)):
            self._rank(owner)

    def largest(self, by_bytes: bool) -> ScopeUsage | None:
        """The owner holding the most rows (or estimated bytes, to within 1%), or None without owners."""
        if len(self.by_name) == 1:
            return next(iter(self.by_name.values()))
        if len(self.by_rows) > 2 * len(self.by_name) + 256 or len(self.by_rows) < len(self.by_name):
            self._resize_heaps()  # stale entries piled up, or owners came while there was one alone
        heap, side = (self.by_bytes, 1) if by_bytes else (self.by_rows, 0)
        while heap:
            size, name = heapq.heappop(heap)
            owner = self.by_name.get(name)
            if owner is None or -size != owner.ranked[side]:
                continue  # a gone owner's, or superseded by the owner's later entry
            current = self.bytes_of(owner) if by_bytes else owner.rows
            if current == -size:
                heapq.heappush(heap, (size, name))
                return owner
            ranked = list(owner.ranked)
            ranked[side] = current  # it moved since: in line again at what it holds now
            owner.ranked = (ranked[0], ranked[1])
            heapq.heappush(heap, (-current, name))
        return None

    def _rank(self, owner: ScopeUsage) -> None:
        owner.ranked = (owner.rows, self.bytes_of(owner))
        heapq.heappush(self.by_rows, (-owner.ranked[0], owner.owner))
        heapq.heappush(self.by_bytes, (-owner.ranked[1], owner.owner))

    def aged(self, owner: ScopeUsage, seq: int, scope: str) -> None:
        """The oldest write of ``scope`` (of ``owner``) is ``seq`` from now."""
        heapq.heappush(owner.ages, (seq, scope))
        self.entries += 1

    def oldest_scope(self, owner: ScopeUsage, scopes: dict[str, VectorScope]) -> tuple[int, str] | None:
        """Take the entry of ``owner``'s scope with the oldest write out of its heap (put it back
        with :meth:`aged`); None if it has none."""
        ages = owner.ages
        while ages:
            entry = heapq.heappop(ages)
            self.entries -= 1
            rows = scopes.get(entry[1])
            if rows is not None and rows.age == entry[0]:
                return entry
        return None

    def rebuild(self, scopes: dict[str, VectorScope]) -> None:
        """Every heap from the scopes (stale entries piled up, or a replay)."""
        for owner in self.by_name.values():
            owner.ages = []
        for name, rows in scopes.items():
            if rows.age >= 0:
                rows.usage.ages.append((rows.age, name))
        self.entries = 0
        for owner in self.by_name.values():
            heapq.heapify(owner.ages)
            self.entries += len(owner.ages)
        self._resize_heaps()

    def piled_up(self, scopes: int) -> bool:
        """Whether stale age entries outnumber live ones enough to :meth:`rebuild`."""
        return self.entries > 2 * scopes + 256

    def _resize_heaps(self) -> None:
        self.by_rows, self.by_bytes = [], []
        for owner in self.by_name.values():
            owner.ranked = (owner.rows, self.bytes_of(owner))
            self.by_rows.append((-owner.ranked[0], owner.owner))
            self.by_bytes.append((-owner.ranked[1], owner.owner))
        heapq.heapify(self.by_rows)
        heapq.heapify(self.by_bytes)
