"""One scope of the embedded vector index: its rows in NumPy arrays, searched exactly.

A scope is the unit a search touches (:mod:`reprise.backends.embedded_vector`). Below
``coded_from`` rows it is searched by brute force; from there it also keeps a sign code
per row (:mod:`reprise.backends.sign_codes`) and a search rescores only the code scan's
candidates. The arrays grow (doubling, then by a quarter from 4,096 rows) and shrink to
half when a quarter full; rows are numbered densely, a removal moving the last row into
the hole. Expiry and write order are kept per row so that the store's sweeps and bounds
(:mod:`reprise.backends.vector_bounds`) can find the rows to drop without a scan of the rest.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from reprise.backends.sign_codes import Hyperplanes, Rows, SignCodes, dot_rows
from reprise.backends.vector import Vector, VectorHit


@dataclass(slots=True, eq=False)
class ScopeUsage:
    """Totals of some scopes: one owner's, or with no ``parent`` the whole store's; kept in step
    on each change (a change to an owner's totals is a change to its ``parent``'s too).

    An owner's also carries its name, its number of scopes and a heap of (a scope's oldest
    write, at most; the scope): :mod:`reprise.backends.vector_owners` keeps them."""

    rows: int = 0
    text: int = 0  # bytes of the keys' and prompts' str objects
    parent: ScopeUsage | None = None
    owner: str = ""
    scopes: int = 0
    ages: list[tuple[int, str]] = field(default_factory=list)
    ranked: tuple[int, int] = (0, 0)  # the rows and bytes of its last entries in the owners' size heaps

    def add(self, rows: int, text: int) -> None:
        self.rows += rows
        self.text += text
        if self.parent is not None:
            self.parent.rows += rows
            self.parent.text += text


@dataclass(slots=True, eq=False)
class VectorScope:
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
    usage: ScopeUsage
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
            self.usage.add(1, sys.getsizeof(key) + sys.getsizeof(prompt))
        else:
            self.usage.add(0, sys.getsizeof(prompt) - sys.getsizeof(self.prompts[row]))
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
        self.usage.add(-1, -sys.getsizeof(key) - sys.getsizeof(self.prompts[row]))
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
            self.usage.add(-self.size, -sum(map(sys.getsizeof, self.keys)) - sum(map(sys.getsizeof, self.prompts)))
            self.keys, self.prompts, self.rows, self.size = [], [], {}, 0
            return keys
        if 4 * len(keys) <= self.size:
            for key in keys:
                self.remove(key)
        else:  # most rows go: rebuild the survivors in one pass
            text = sum(map(sys.getsizeof, keys)) + sum(sys.getsizeof(self.prompts[row]) for row in rows.tolist())
            self.usage.add(-len(keys), -text)
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
