"""The embedded vector index's one file: an append-only log of its upserts and deletes.

Each record is framed ``u32 header length | header JSON | float32 vector`` (a delete has
``"d": 1`` and no vector). The log is replayed when the store is first used, a torn last
record is cut off, and the store has it rewritten with only the live rows, oldest first,
once more than half of it is dead (:meth:`VectorLog.mostly_dead`). The store decides when;
this module only reads and writes the file, and counts its records.

A rewrite during service runs in a worker thread from a copy of the live rows taken on the
event loop a batch of scopes at a time (:class:`SnapshotCopy`): it had run on the loop, 0.3-0.6
s at 50,000-100,000 live rows during which every request waited, exact hits included. Records
appended meanwhile go to the old file and are kept aside; the new file gets them too before it
replaces the old one, under the lock appends take.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The live rows as they were when :func:`snapshot` was taken, scope after scope."""

    names: list[str]
    sizes: list[int]
    keys: list[str]
    prompts: list[str]
    vectors: np.ndarray
    expires: np.ndarray
    seqs: np.ndarray


class SnapshotCopy:
    """A :class:`Snapshot` taken a batch of scopes at a time, on the event loop.

    Per-scope copies cost ~5 us a scope (0.37 s at 50,000 one-row scopes in one go), so the
    store copies :data:`COPY_BATCH` scopes per write. Scopes that change between two batches
    are consistent all the same: everything written since the first batch is also kept for the
    new file (:meth:`VectorLog.keep_appends`) and replayed after the copy, so a change already
    in the copy is applied twice (an upsert, or a delete of what is gone: no effect).
    """

    def __init__(self, scopes: list[tuple[str, VectorScope]]) -> None:
        self.scopes = scopes
        self.done = 0
        self._names: list[str] = []
        self._sizes: list[int] = []
        self._keys: list[str] = []
        self._prompts: list[str] = []
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @property
    def finished(self) -> bool:
        return self.done >= len(self.scopes)

    def step(self, batch: int = 4096) -> None:
        """Copy the next ``batch`` scopes' live rows."""
        for name, rows in self.scopes[self.done : self.done + batch]:
            size = rows.size
            self._names.append(name)
            self._sizes.append(size)
            self._keys += rows.keys[:size]
            self._prompts += rows.prompts[:size]
            self._parts.append((rows.matrix[:size].copy(), rows.expires[:size].copy(), rows.seqs[:size].copy()))
        self.done += batch

    def snapshot(self, dim: int) -> Snapshot:
        """The rows copied (call once :attr:`finished`; may run in a worker thread)."""
        parts = self._parts
        return Snapshot(
            self._names, self._sizes, self._keys, self._prompts,
            np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, dim), np.float32),
            np.concatenate([p[1] for p in parts]) if parts else np.zeros(0),
            np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64),
        )


def snapshot(scopes: list[tuple[str, VectorScope]], dim: int) -> Snapshot:
    """All the live rows at once (at start, before the store serves)."""
    copy = SnapshotCopy(scopes)
    copy.step(len(scopes))
    return copy.snapshot(dim)


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
        self._pending: list[bytes] | None = None  # appended during a rewrite: written to its file too

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
            if self._pending is not None:
                self._pending.extend(frames)
            try:
                self._file.write(b"".join(frames))
                self._file.flush()
            except OSError as exc:
                raise BackendError(f"vector index at {self.directory}: {exc}") from exc

    def mostly_dead(self, live: int) -> bool:
        """More than half of the records are deleted, replaced, evicted or expired rows."""
        return 2 * (self.records - live) > self.records > 64

    def drop_appends(self) -> None:
        """A rewrite begun with :meth:`keep_appends` is abandoned."""
        with self._lock:
            self._pending = None

    def keep_appends(self) -> None:
        """From now until :meth:`rewrite` ends, appends are also kept for the rewritten file."""
        with self._lock:
            self._pending = []

    def rewrite(self, rows: Snapshot | SnapshotCopy, dim: int = 0) -> None:
        """Rewrite with only ``rows`` (and what was appended since :meth:`keep_appends`), in write
        order (eviction stays first in, first out). May run in a worker thread."""
        if isinstance(rows, SnapshotCopy):
            rows = rows.snapshot(dim)  # the concatenation, off the event loop
        tmp = self.directory / (_LOG + ".tmp")
        names = np.repeat(np.arange(len(rows.names)), rows.sizes)
        order = np.argsort(rows.seqs, kind="stable")
        try:
            out = open(tmp, "wb", buffering=2**20)  # noqa: SIM115  (closed below, under the lock)
            try:
                for row, name in zip(order.tolist(), names[order].tolist(), strict=True):
                    expires = float(rows.expires[row])
                    header = {"s": rows.names[name], "k": rows.keys[row], "p": rows.prompts[row],
                              "e": None if expires == math.inf else expires}
                    out.write(frame(header, rows.vectors[row].tobytes()))
            except BaseException:
                out.close()
                raise
            with self._lock:  # appends wait from here until the new file is in place
                pending, self._pending = self._pending or [], None
                with out:
                    out.write(b"".join(pending))
                was_open = self._file is not None
                self.close()
                try:
                    os.replace(tmp, self.path)
                    self.records = len(order) + len(pending)
                finally:
                    if was_open:
                        self.open()
        except OSError as exc:
            with self._lock:
                self._pending = None
            raise BackendError(f"vector index at {self.directory}: {exc}") from exc
