"""The embedded vector index's one file: an append-only log of its upserts and deletes.

Each record is framed ``u32 header length | header JSON | float32 vector`` (a delete has
``"d": 1`` and no vector). The log is replayed when the store is first used, a torn last
record is cut off, and the store has it rewritten with only the live rows, oldest first,
once more than half of it is dead (:meth:`VectorLog.mostly_dead`). The store decides when;
this module only reads and writes the file, and counts its records.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from reprise.backends.vector import Vector
from reprise.backends.vector_scope import VectorScope
from reprise.errors import BackendError

_FRAME = struct.Struct("<I")
_LOG = "vectors.log"


def frame(header: Mapping[str, object], vector: bytes) -> bytes:
    """One record: the header's length, the header as JSON, then the vector's bytes."""
    head = orjson.dumps(header)
    return _FRAME.pack(len(head)) + head + vector


class VectorLog:
    """``{directory}/vectors.log``, appended to under the store's lock.

    ``records`` counts the records in the file; those not behind a row in memory are dead.
    """

    def __init__(self, directory: Path, lock: threading.RLock) -> None:
        self.directory = directory
        self.path = directory / _LOG
        self.records = 0
        self.replayed_to = 0
        """Where the last whole record read by :meth:`replay` ends."""
        self._lock = lock  # the store's: its open holds it while a replay evicts (and writes nothing)
        self._file: IO[bytes] | None = None

    @property
    def is_open(self) -> bool:
        return self._file is not None

    def replay(self, dim: int) -> Iterator[tuple[dict[str, Any], Vector | None]]:
        """Each whole record: its header, and its vector (None for a delete)."""
        self.replayed_to = 0
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        offset, width = 0, dim * 4
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
            self.records += 1
            if deleted:
                yield header, None
            else:
                yield header, np.frombuffer(data, dtype=np.float32, count=dim, offset=start + length)
            offset = self.replayed_to = end

    def cut_torn_tail(self) -> None:
        """Cut what follows the last whole record: appends must not land behind a torn write."""
        if self.path.exists() and self.path.stat().st_size > self.replayed_to:
            os.truncate(self.path, self.replayed_to)

    def open(self) -> None:
        try:
            self._file = open(self.path, "ab")  # noqa: SIM115  (closed in close)
        except OSError as exc:
            raise BackendError(f"vector index at {self.directory}: {exc}") from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, frames: list[bytes]) -> None:
        if not frames:
            return
        with self._lock:
            if self._file is None:
                return  # replaying, or closed: a rewrite follows, or nothing is kept
            self.records += len(frames)
            try:
                self._file.write(b"".join(frames))
                self._file.flush()
            except OSError as exc:
                raise BackendError(f"vector index at {self.directory}: {exc}") from exc

    def mostly_dead(self, live: int) -> bool:
        """More than half of the records are deleted, replaced, evicted or expired rows."""
        return 2 * (self.records - live) > self.records > 64

    def rewrite(self, scopes: list[tuple[str, VectorScope]]) -> None:
        """Rewrite with only the live rows, in write order (eviction stays first in, first out)."""
        tmp = self.directory / (_LOG + ".tmp")
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
                    out.write(frame(header, rows.matrix[row].tobytes()))
            os.replace(tmp, self.path)
        except OSError as exc:
            raise BackendError(f"vector index at {self.directory}: {exc}") from exc
        self.records = len(order)
