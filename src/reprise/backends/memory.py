"""An in-process LRU store (LiteLLM's ``type: local``), the default backend.

It lives in one event loop, so it takes no locks: every method runs to
completion between two ``await`` points. A hit is one dict lookup, one
comparison with the deadline and one ``move_to_end``; nothing else is on that
path. Entries are bounded in payload bytes (and in number, when ``max_entries``
is set), and evicted least recently used first, from the owners holding more than a fair
share (see :meth:`MemoryBackend._enforce_bounds`), so one tenant's flood does not push
out another tenant's few entries.

Expiry uses an injectable monotonic clock (a deadline stored beside the value)
rather than the entry's own wall-clock metadata, so a store never decodes what
it holds. Expired entries are dropped when read, and a full sweep runs at most
every :data:`SWEEP_INTERVAL` seconds on a write so entries nobody asks for again
do not hold memory until LRU pressure pushes them out.
"""

from __future__ import annotations

import math
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from reprise.backends.base import Capabilities
from reprise.core.key_owner import owner_of

if TYPE_CHECKING:
    from reprise.backends.base import Backend
    from reprise.config.models import LocalCacheParams

DECODED_MAX_ENTRIES = 16_384
"""Decoded forms kept (:meth:`MemoryBackend.get_decoded`); past it they are all dropped and made again.
Each is a few hundred bytes (the value itself is the store's); the bound keeps them few
when the store holds many small entries."""

SWEEP_INTERVAL = 30.0
"""Seconds of the backend's clock between two full sweeps of expired entries."""

_NEVER = math.inf


class MemoryBackend:
    """A bounded LRU byte store in this process; lost on restart, invisible to others.

    ``max_bytes`` bounds the sum of the values' lengths (Python's per-entry overhead,
    about 300 bytes with a 64-character key, is not counted); ``max_entries``, when
    not None, also bounds their number. A value
    longer than ``max_bytes`` is not stored at all, and replaces nothing but
    the stale value under its key, which is dropped.
    """

    name = "local"
    capabilities = Capabilities(native_ttl=True, shared=False, persistent=False)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int = 256 * 2**20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (max_entries is not None and max_entries < 1) or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # key -> (value, deadline on self._clock; inf for no expiry), oldest use first
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._size = 0
        self._decoded: dict[str, tuple[bytes, object]] = {}
        """key -> (the value, its decoded form): dropped with the value (:meth:`_discard`, bounds, clear)."""
        self._owned: dict[str, int] = {}
        """Bytes held per owner (:func:`owner_of`): kept on writes and removals, never on a hit."""
        self._counts: dict[str, int] = {}
        """Entries held per owner, likewise (the share of ``max_entries``)."""
        self._next_sweep = -_NEVER
        self.evictions = 0
        """Entries pushed out by the bounds (not by expiry) since creation."""

    @classmethod
    def from_params(cls, params: LocalCacheParams, environ: Mapping[str, str] | None = None) -> Backend:
        """Build from ``type: local``'s params: its ``max_entries`` and ``max_bytes`` bounds.

        In a worker of ``reprise serve --workers N`` (``environ`` names the server's shared
        directory) it is the machine's one cache instead: :mod:`reprise.backends.machine`.
        """
        from reprise.backends.machine import machine_tier, workers_dir

        shared = workers_dir(os.environ if environ is None else environ)
        if shared is not None:
            return machine_tier(params, shared)
        return cls(max_entries=params.max_entries, max_bytes=params.max_bytes)

    # -- admin views ------------------------------------------------------------------

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included."""
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        """Sum of the held values' lengths."""
        return self._size

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self._get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    def get_decoded(self, key: str, decode: Callable[[bytes], object]) -> object | None:
        """:class:`~reprise.backends.base.KeepsDecoded`: the value's decoded form, made once per value.

        Decoding a hit's entry (its header and metadata JSON, a new entry object) was
        23k of ~400k instructions of a 100 KB streamed hit; it is now done when the value
        is first read after being stored.
        """
        value = self._get(key)
        if value is None:
            return None
        known = self._decoded.get(key)
        if known is not None and known[0] is value:
            return known[1]
        decoded = decode(value)
        if len(self._decoded) >= DECODED_MAX_ENTRIES:
            self._decoded.clear()
        self._decoded[key] = (value, decoded)
        return decoded

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        now = self._clock()
        self._discard(key)
        if len(value) > self.max_bytes or (ttl is not None and ttl <= 0):
            return
        self._data[key] = (value, _NEVER if ttl is None else now + ttl)
        self._size += len(value)
        owner = owner_of(key)
        self._owned[owner] = self._owned.get(owner, 0) + len(value)
        self._counts[owner] = self._counts.get(owner, 0) + 1
        if now >= self._next_sweep:
            self._sweep(now)
        self._enforce_bounds()

    async def delete(self, key: str) -> bool:
        item = self._data.get(key)
        if item is None:
            return False
        self._discard(key)
        return item[1] > self._clock()

    async def clear(self, namespace: str | None = None) -> int:
        if namespace is None:
            count = len(self._data)
            self._data.clear()
            self._decoded.clear()
            self._owned.clear()
            self._counts.clear()
            self._size = 0
            return count
        prefix = f"{namespace}:"
        doomed = [key for key in self._data if key.startswith(prefix)]
        for key in doomed:
            self._discard(key)
        return len(doomed)

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        prefix = None if namespace is None else f"{namespace}:"
        now = self._clock()
        # A snapshot: the caller may await (and so let writers run) between items.
        for key, (_, deadline) in list(self._data.items()):
            if deadline > now and (prefix is None or key.startswith(prefix)):
                yield key

    async def aclose(self) -> None:
        """Drop every entry to free the memory; the store stays usable (and empty)."""
        self._data.clear()
        self._decoded.clear()
        self._owned.clear()
        self._counts.clear()
        self._size = 0

    # -- internals --------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline is not _NEVER and deadline <= self._clock():
            self._discard(key)
            return None
        self._data.move_to_end(key)
        return value

    def _discard(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._forget(key, len(item[0]))

    def _forget(self, key: str, size: int) -> None:
        """Account for the removal of ``key``'s value of ``size`` bytes."""
        self._size -= size
        self._decoded.pop(key, None)
        owner = owner_of(key)
        left = self._counts[owner] - 1
        if left:
            self._counts[owner] = left
            self._owned[owner] -= size
        else:
            del self._counts[owner], self._owned[owner]

    def _sweep(self, now: float) -> None:
        expired = [key for key, (_, deadline) in self._data.items() if deadline <= now]
        for key in expired:
            self._discard(key)
        self._next_sweep = now + SWEEP_INTERVAL

    def _enforce_bounds(self) -> None:
        """Evict until within the bounds: the least recently used entry of an owner holding more
        than an equal share of the bound exceeded (``max_bytes``, else ``max_entries``; over all
        owners with entries: at least one holds more than that while the bound is exceeded).

        Found from outside: with plain LRU one tenant's cheap embeddings requests pushed out
        another tenant's chat entries. Now a tenant within its share keeps its entries while
        any other is above it; with one owner (no virtual keys) this is plain LRU. The entries
        passed over are moved to the recent end, so each is passed over once per round of
        evictions, not once per eviction.
        """
        data = self._data
        max_entries = len(data) if self.max_entries is None else self.max_entries
        while len(data) > max_entries or self._size > self.max_bytes:
            if self._size > self.max_bytes:
                key = self._victim(self._owned, self.max_bytes)
            else:
                key = self._victim(self._counts, max_entries)
            value, _ = data.pop(key)
            self._forget(key, len(value))
            self.evictions += 1

    def _victim(self, owned: dict[str, int], bound: int) -> str:
        """The LRU entry of an owner holding more than ``bound / owners`` of ``owned``'s measure."""
        if len(owned) == 1:
            return next(iter(self._data))
        share = bound / len(owned)
        passed = []
        victim = None
        for key in self._data:
            if owned[owner_of(key)] > share:
                victim = key
                break
            passed.append(key)
        for key in passed:
            self._data.move_to_end(key)
        return victim if victim is not None else next(iter(self._data))  # every owner within share: LRU

