"""An embedded vector index: one NumPy matrix per scope, persisted as an append-only log.

Scopes partition the rows, so a search only touches one conversation context's entries.
A small scope (below ``coded_from`` rows, 4,096 by default) is searched by brute force:
a matrix-vector product over its rows, exact, 0.1 ms at 4,096 x 512. A larger scope also
keeps a 512-bit sign code per row (:mod:`reprise.backends.sign_codes`); a search scans
the codes with a SIMD Hamming kernel and rescores the rows under the threshold's cutoff
exactly with their float32 vectors: 0.3-0.5 ms at 100,000 x 512 where brute force takes
8-35 ms (docs/semantic.md, ``bench/semantic_speed.py``). Every reported score is the
exact cosine; a row at or above the threshold is missed with probability below 1e-9.

Persistence: every upsert and delete appends one framed record to
``{directory}/vectors.log`` (``u32 header length | header JSON | float32 vector``).
The log is the only file: it is replayed when the store is first used (the codes are
rebuilt from it in one batch: 1-2 s for 100,000 rows here, replay included), a torn
last record is cut off, and the log is rewritten without dead records when more than
half of it is dead.
One process owns the directory (``shared=False``).
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
import orjson

from reprise.backends.sign_codes import Hyperplanes, SignCodes, dot_rows
from reprise.backends.vector import Vector, VectorHit, VectorRecord
from reprise.errors import BackendError

_FRAME = struct.Struct("<I")
_LOG = "vectors.log"


@dataclass
class _Scope:
    """The rows of one scope; rows beyond ``size`` are spare capacity.

    Once the scope holds ``coded_from`` rows it also keeps their sign codes, and a search
    scans those instead of the whole matrix (``codes`` is None below that size, and while
    the log is replayed: :meth:`encode` then builds them in one batch).
    """

    dim: int
    planes: Hyperplanes
    coded_from: int
    encoding: bool = True
    matrix: npt.NDArray[np.float32] = field(init=False)
    expires: npt.NDArray[np.float64] = field(init=False)
    codes: SignCodes | None = None
    size: int = 0
    keys: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((16, self.dim), dtype=np.float32)
        self.expires = np.full(16, np.inf)

    def put(self, key: str, prompt: str, vector: Vector, expires_at: float | None) -> None:
        row = self.rows.get(key)
        if row is None:
            if self.size == len(self.matrix):
                self._grow(2 * self.size)
            row = self.size
            self.size += 1
            self.keys.append(key)
            self.prompts.append(prompt)
            self.rows[key] = row
        else:
            self.prompts[row] = prompt
        self.expires[row] = expires_at or np.inf
        self.matrix[row] = vector
        if self.codes is not None:
            self.codes.set(row, self.matrix[row])
        elif self.encoding and self.size >= self.coded_from:
            self.encode()

    def remove(self, key: str) -> bool:
        row = self.rows.pop(key, None)
        if row is None:
            return False
        last = self.size - 1
        if row != last:  # move the last row into the hole
            self.matrix[row] = self.matrix[last]
            self.expires[row] = self.expires[last]
            self.keys[row], self.prompts[row] = self.keys[last], self.prompts[last]
            self.rows[self.keys[row]] = row
            if self.codes is not None:
                self.codes.move(last, row)
        self.keys.pop()
        self.prompts.pop()
        self.size = last
        return True

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

    def _grow(self, capacity: int) -> None:
        matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        matrix[: self.size] = self.matrix[: self.size]
        expires = np.full(capacity, np.inf)
        expires[: self.size] = self.expires[: self.size]
        self.matrix, self.expires = matrix, expires
        if self.codes is not None:
            self.codes.grow(capacity)


class LocalVectorStore:
    """Embedded vector store for ``type: local-semantic``; opens its directory lazily."""

    name = "local-vectors"

    def __init__(self, directory: str | os.PathLike[str], dim: int, *, coded_from: int = 4096) -> None:
        self.directory = Path(directory)
        self.dim = dim
        self.coded_from = coded_from
        self._planes: Hyperplanes | None = None
        self._scopes: dict[str, _Scope] | None = None
        self._log: IO[bytes] | None = None
        self._dead = 0
        self._records = 0
        self._lock = threading.Lock()

    # -- the VectorStore protocol ------------------------------------------------------

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        scopes = self._open()
        rows = scopes.get(scope)
        return [] if rows is None else rows.search(vector, k, threshold, time.time())

    async def upsert(self, record: VectorRecord) -> None:
        if record.vector.shape != (self.dim,):
            raise BackendError(f"vector of shape {record.vector.shape}, index has {self.dim} dimensions")
        scopes = self._open()
        rows = self._scope(scopes, record.scope)
        if record.key in rows.rows:
            self._dead += 1
        rows.put(record.key, record.prompt, record.vector, record.expires_at)
        header = {"s": record.scope, "k": record.key, "p": record.prompt, "e": record.expires_at}
        self._append(header, record.vector.astype(np.float32).tobytes())

    async def delete(self, scope: str, key: str) -> bool:
        rows = self._open().get(scope)
        if rows is None or not rows.remove(key):
            return False
        self._dead += 2
        self._append({"s": scope, "k": key, "d": 1}, b"")
        return True

    async def aclose(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __len__(self) -> int:
        return sum(rows.size for rows in self._open().values())

    # -- the log ---------------------------------------------------------------------

    def _open(self) -> dict[str, _Scope]:
        if self._scopes is not None:
            return self._scopes
        with self._lock:
            if self._scopes is None:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                    log = self.directory / _LOG
                    self._scopes, end = self._replay(log)
                    if log.exists() and log.stat().st_size > end:
                        os.truncate(log, end)  # a torn last write: appends must not land behind it
                    if self._dead * 2 > self._records > 64:
                        self._compact()
                    self._log = open(self.directory / _LOG, "ab")  # noqa: SIM115  (closed in aclose)
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
            rows = self._scope(scopes, header["s"], encoding=False)
            if deleted:
                rows.remove(header["k"])
                self._dead += 2
            else:
                if header["k"] in rows.rows:
                    self._dead += 1
                vector = np.frombuffer(data, dtype=np.float32, count=self.dim, offset=start + length)
                rows.put(header["k"], header["p"], vector, header["e"])
            offset = end
        for rows in scopes.values():
            rows.encode()  # codes for the large scopes, in one batch per scope
        return scopes, offset

    def _scope(self, scopes: dict[str, _Scope], name: str, encoding: bool = True) -> _Scope:
        rows = scopes.get(name)
        if rows is None:
            if self._planes is None:
                self._planes = Hyperplanes(self.dim)
            rows = scopes[name] = _Scope(self.dim, self._planes, self.coded_from, encoding)
        return rows

    def _compact(self) -> None:
        assert self._scopes is not None
        tmp = self.directory / (_LOG + ".tmp")
        with open(tmp, "wb") as out:
            for scope, rows in self._scopes.items():
                for row in range(rows.size):
                    expires = float(rows.expires[row])
                    header = {"s": scope, "k": rows.keys[row], "p": rows.prompts[row],
                              "e": None if expires == np.inf else expires}
                    out.write(_frame(header, rows.matrix[row].tobytes()))
        os.replace(tmp, self.directory / _LOG)
        self._dead = 0

    def _append(self, header: Mapping[str, object], vector: bytes) -> None:
        self._records += 1
        with self._lock:
            if self._log is None:
                return
            try:
                self._log.write(_frame(header, vector))
                self._log.flush()
            except OSError as exc:
                raise BackendError(f"vector index at {self.directory}: {exc}") from exc


def _frame(header: Mapping[str, object], vector: bytes) -> bytes:
    head = orjson.dumps(header)
    return _FRAME.pack(len(head)) + head + vector

