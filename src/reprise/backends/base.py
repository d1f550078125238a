"""The one small interface every key-value cache store implements.

Values are opaque bytes (the core's encoded :class:`~reprise.core.entry.CacheEntry`);
expiry is decided by the core from the entry's own metadata, so a store without
native TTL is still correct. ``ttl`` is passed so stores that *can* expire entries
themselves (Redis, memory) reclaim space; it is a hint for space, not for correctness.

Every method may raise only :class:`~reprise.errors.BackendError` (or a subclass):
each backend translates its SDK's exceptions at its edge, and the driver catches
only that family to fail open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What differs between stores, so the driver never asks which class it has."""

    native_ttl: bool
    """The store expires entries by itself."""
    shared: bool
    """Other processes see what this one writes (Redis, disk, object stores)."""
    persistent: bool
    """Entries survive a restart of the gateway."""


@runtime_checkable
class Backend(Protocol):
    """An async byte store keyed by strings (``{namespace}:{sha256}`` or ``{sha256}``)."""

    name: str
    capabilities: Capabilities

    async def get(self, key: str) -> bytes | None:
        """Return the stored bytes, or None when absent (or expired natively)."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Batched :meth:`get`, answers in the order of ``keys``."""
        ...

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        """Store ``value``; ``ttl`` seconds (None: no expiry) is a space hint."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove one key; True if it existed."""
        ...

    async def clear(self, namespace: str | None = None) -> int:
        """Remove every key (or only keys starting ``{namespace}:``); return how many."""
        ...

    def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        """Iterate over stored keys (for admin listing); order unspecified."""
        ...

    async def aclose(self) -> None:
        """Release connections, files and threads. Idempotent."""
        ...


@runtime_checkable
class DistributedLock(Protocol):
    """Optional: a shared backend that can also elect one producer per key across processes.

    The driver's in-process single-flight comes first; only its leader asks here, so
    identical misses on many gateway instances cost one upstream call where the lock
    is won, and at worst one per instance (when the lock's holder is slow or dies, or
    the store is down: then :meth:`acquire` raises and the driver just produces).
    A wrapper that may or may not have a lock behind it says so with
    ``lock_timeout <= 0`` (disabled).
    """

    lock_timeout: float
    """Seconds a lock lives, and so the longest a process waits for another's answer."""

    async def acquire(self, key: str, ttl: float) -> bool:
        """Take the lock on ``key`` for ``ttl`` seconds; False if another process holds it."""
        ...

    async def release(self, key: str) -> None:
        """Give back a lock this process holds (never another's, even after expiry)."""
        ...

    async def note_waiting(self, key: str, ttl: float) -> None:
        """Mark, for ``ttl`` seconds, that this process waits for the answer of ``key``'s holder
        (the holder then knows its answer is awaited: :meth:`has_waiters`)."""
        ...

    async def has_waiters(self, key: str) -> bool:
        """Whether a process marked itself waiting for ``key``'s answer within its mark's ``ttl``."""
        ...


@runtime_checkable
class StartupCheck(Protocol):
    """Optional: a store that can tell at start-up whether its settings can ever work.

    The gateway calls :meth:`check` once before serving. A setting that will never
    work (a missing bucket, rejected credentials) raises
    :class:`~reprise.errors.ConfigError` naming it, and the gateway refuses to start;
    an outage raises :class:`~reprise.errors.BackendError`, which the driver counts
    and warns about once, and the gateway starts and fails open.
    """

    async def check(self) -> None:
        """Probe the store once; see the class docstring for what each outcome means."""
        ...


@runtime_checkable
class Degradable(Protocol):
    """Optional: a store with a local tier that answers from memory while its shared part is down.

    ``degraded`` is True while the last call to the shared part failed; a success served
    from the local tier meanwhile does not end the driver's outage.
    """

    degraded: bool


@runtime_checkable
class KeepsDecoded(Protocol):
    """Optional: an in-process store that keeps a value's decoded form beside the value.

    The driver decodes what a store returns (an entry's header and metadata JSON). A
    store in this process hands out the same ``bytes`` on every hit, so it can keep the
    decoded form with the value and drop both together: no memory is held for a value the
    store no longer has, and a 100 KB answer is not decoded again on every hit. Reads
    through it are otherwise :meth:`Backend.get`'s (expiry, recency).
    """

    def get_decoded(self, key: str, decode: Callable[[bytes], object]) -> object | None:
        """``decode(value)`` for the value under ``key`` (computed once per value), or None if absent."""
        ...


def namespace_of(key: str) -> str | None:
    """The namespace part of a stored key, or None for a plain hash key."""
    head, sep, _ = key.rpartition(":")
    return head if sep else None
