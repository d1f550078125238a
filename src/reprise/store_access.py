"""Fail-open access to a cache store, with the driver's counters.

Every backend call of the driver goes through :class:`StoreAccess`: a
:class:`~reprise.errors.BackendError` becomes a miss or a skipped store, is counted,
and is logged once per outage rather than once per request, however partly the store
fails (:mod:`reprise.outage`). Entries are decoded and judged fresh here, with the clock passed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from reprise.backends.base import Backend, Degradable, KeepsDecoded, StartupCheck
from reprise.core.answer_expiry import provider_expiry
from reprise.core.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from reprise.core.policy import CachePolicy, expiry_time, is_usable
from reprise.errors import BackendError
from reprise.outage import READ, WRITE, Outage

log = logging.getLogger("reprise.cache")

#: Bounds of the memo of decoded entries (:meth:`StoreAccess._remember`).
_DECODED_MAX_ENTRIES = 1024
_DECODED_MAX_BYTES = 8 * 2**20
_DECODED_MAX_VALUE = 64 * 2**10


@dataclass(slots=True)
class CacheStats:
    """Counters since start, kept by the driver only; read by the server's stats and tests."""

    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    stores: int = 0
    coalesced: int = 0
    backend_errors: int = 0
    upstream_calls: int = 0


class StoreAccess:
    """One :class:`Backend` read and written fail-open; the base of the driver."""

    def __init__(
        self,
        backend: Backend | None = None,
        policy: CachePolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if backend is None:
            from reprise.backends.memory import MemoryBackend

            backend = MemoryBackend()
        self.backend = backend
        self.policy = policy or CachePolicy()
        self.clock = clock
        self.stats = CacheStats()
        self.outage = Outage(log, f"cache backend {backend.name}", "serving from upstream")
        self._decoded: dict[int, tuple[bytes, CacheEntry]] = {}
        self._decoded_bytes = 0
        self._keeps_decoded = backend.get_decoded if isinstance(backend, KeepsDecoded) else None
        """An in-process store's own decoded forms (dropped with its values), used instead of the memo."""

    @property
    def failing(self) -> bool:
        """True from a store failure until every kind of operation that failed works again."""
        return bool(self.outage.kinds)

    def fault(self, exc: BackendError, action: str, kind: str) -> None:
        """Count a failed ``action`` (of ``kind``: read, write, lock); log it if it opens an outage."""
        self.stats.backend_errors += 1
        self.outage.failed(kind, action, exc)

    def succeeded(self, kind: str) -> None:
        """An operation of ``kind`` worked: it may end the outage (one "recovered" line)."""
        # A backend with a local tier answers from memory while its shared store is
        # down; ``degraded`` says so, and such a success does not end the outage.
        if self.outage.kinds and not (isinstance(self.backend, Degradable) and self.backend.degraded):
            self.outage.succeeded(kind)

    def _usable(self, raw: bytes | None, max_age: float | None, now: float) -> CacheEntry | None:
        if raw is None:
            return None
        known = self._decoded.get(id(raw))
        if known is not None and known[0] is raw:
            entry = known[1]
        else:
            try:
                entry = decode_entry(raw)
            except EntryFormatError:
                return None
            self._remember(raw, entry)
        return entry if is_usable(entry, now, max_age) else None

    def _remember(self, raw: bytes, entry: CacheEntry) -> None:
        """Keep a decoded entry for the next read that returns this very ``bytes`` object.

        An in-process store hands out the same object on every hit: decoding it again
        (its metadata JSON, a new entry) was ~2.5 µs of a hit. Keyed by identity, checked
        with ``is`` (the memo holds the object, so its id is not reused meanwhile): no
        hashing of the value, and a read still goes to the store every time, so a delete,
        an expiry or a newer value is seen as before; freshness is judged after the memo.
        Bounded in entries and bytes; a store that returns new objects only fills it.
        """
        size = len(raw)
        if size > _DECODED_MAX_VALUE:
            return
        if len(self._decoded) >= _DECODED_MAX_ENTRIES or self._decoded_bytes + size > _DECODED_MAX_BYTES:
            self._decoded.clear()
            self._decoded_bytes = 0
        self._decoded[id(raw)] = (raw, entry)
        self._decoded_bytes += size

    async def read(self, key: str, max_age: float | None = None) -> CacheEntry | None:
        """The usable entry for ``key``, or None (absent, stale, corrupt, or store down)."""
        if self._keeps_decoded is not None:
            entry = self._keeps_decoded(key, _decoded_or_none)
            if entry is None:
                return None
            assert isinstance(entry, CacheEntry)
            return entry if is_usable(entry, self.clock(), max_age) else None
        try:
            raw = await self.backend.get(key)
        except BackendError as exc:
            self.fault(exc, "get", READ)
            return None
        if self.outage.kinds:
            self.succeeded(READ)
        return self._usable(raw, max_age, self.clock())

    async def read_many(self, keys: Sequence[str], max_age: float | None = None) -> list[CacheEntry | None]:
        if not keys:
            return []
        try:
            raws = await self.backend.get_many(keys)
        except BackendError as exc:
            self.fault(exc, "get_many", READ)
            return [None] * len(keys)
        if self.outage.kinds:
            self.succeeded(READ)
        now = self.clock()
        return [self._usable(raw, max_age, now) for raw in raws]

    def make_entry(self, body: bytes, ttl: float | None, meta: dict[str, Any], recording: bytes = b"") -> CacheEntry:
        now = self.clock()
        expires = expiry_time(now, ttl)
        said = provider_expiry(body)  # an audio answer's id dies at its expires_at
        if said is not None and (expires is None or said < expires):
            expires = said
        return CacheEntry(body=body, created_at=now, expires_at=expires, meta=meta, recording=recording)

    async def write(self, key: str, entry: CacheEntry) -> bool:
        """Store ``entry``; False (and counted) if the store failed. An entry already expired
        (its answer's own ``expires_at`` passed) is not written."""
        ttl = entry.ttl_left(self.clock())
        if ttl == 0.0:
            return False
        try:
            await self.backend.set(key, encode_entry(entry), ttl)
        except BackendError as exc:
            self.fault(exc, "set", WRITE)
            return False
        if self.outage.kinds:
            self.succeeded(WRITE)
        self.stats.stores += 1
        return True

    async def delete(self, key: str) -> bool:
        return await self.backend.delete(key)

    async def clear(self, namespace: str | None = None) -> int:
        return await self.backend.clear(namespace)

    async def open(self) -> None:
        """Run the store's start-up check, if it has one (:class:`StartupCheck`).

        A :class:`~reprise.errors.ConfigError` propagates (the gateway refuses to
        start); an outage is a fault like any other: one warning, and fail open.
        """
        if isinstance(self.backend, StartupCheck):
            try:
                await self.backend.check()
            except BackendError as exc:
                self.fault(exc, "start-up check", READ)

    async def aclose(self) -> None:
        await self.backend.aclose()


def _decoded_or_none(raw: bytes) -> CacheEntry | None:
    """A stored value's entry, or None when it is not one (a corrupt value reads as absent)."""
    try:
        return decode_entry(raw)
    except EntryFormatError:
        return None
