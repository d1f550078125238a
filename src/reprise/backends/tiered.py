"""A local tier in front of a shared store (LiteLLM's dual cache), for any shared backend.

A hot entry is answered from this process's memory without a round trip. The
price is a bounded staleness: a local copy lives at most ``front_ttl`` seconds
(and never past its own entry's expiry, which the core checks), so an overwrite,
``no-cache`` refresh, delete or flush made through *another* instance is seen here
within ``front_ttl`` seconds at the latest. Through *this* instance it is seen
at once, since every write and delete goes to both tiers.

Writes go to the front first, then to the back: while the shared store is down,
what this instance produces is still answered locally for ``front_ttl`` seconds,
and the back's error still reaches the driver (which counts it and fails open).
:attr:`degraded` says the last call to the back failed, so the driver does not
take a front hit for the end of an outage (one warning per outage, not one per flap).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from reprise.backends.base import Backend, DistributedLock
from reprise.backends.memory import MemoryBackend
from reprise.errors import BackendError

T = TypeVar("T")


class TieredBackend:
    """``front`` (in-process, short-lived copies) over ``back`` (shared, authoritative).

    It is a :class:`DistributedLock` when ``back`` is one (``lock_timeout`` is then
    the back's); otherwise ``lock_timeout`` is 0 and the driver does not lock.
    """

    def __init__(self, front: MemoryBackend, back: Backend, *, front_ttl: float) -> None:
        if front_ttl <= 0:
            raise ValueError("front_ttl must be positive")
        self.front = front
        self.back = back
        self.front_ttl = front_ttl
        self.name = f"{back.name}+local"
        self.capabilities = back.capabilities
        self.lock_timeout = back.lock_timeout if isinstance(back, DistributedLock) else 0.0
        self.degraded = False
        """True from a failed call to ``back`` until one succeeds."""

    async def _back(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except BackendError:
            self.degraded = True
            raise
        self.degraded = False
        return result

    def _front_ttl(self, ttl: float | None) -> float:
        return self.front_ttl if ttl is None else min(ttl, self.front_ttl)

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = await self.front.get(key)
        if value is not None:
            return value
        value = await self._back(self.back.get(key))
        if value is not None:
            await self.front.set(key, value, self.front_ttl)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = await self.front.get_many(keys)
        missing = [i for i, value in enumerate(found) if value is None]
        if not missing:
            return found
        fetched = await self._back(self.back.get_many([keys[i] for i in missing]))
        for i, value in zip(missing, fetched, strict=True):
            if value is not None:
                found[i] = value
                await self.front.set(keys[i], value, self.front_ttl)
        return found

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.front.set(key, value, self._front_ttl(ttl))
        await self._back(self.back.set(key, value, ttl))

    async def delete(self, key: str) -> bool:
        local = await self.front.delete(key)
        shared = await self._back(self.back.delete(key))
        return shared or local

    async def clear(self, namespace: str | None = None) -> int:
        await self.front.clear(namespace)
        return await self._back(self.back.clear(namespace))

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        async for key in self.back.keys(namespace):
            yield key

    async def aclose(self) -> None:
        await self.front.aclose()
        await self.back.aclose()

    # -- DistributedLock, delegated -------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> bool:
        if isinstance(self.back, DistributedLock):
            return await self._back(self.back.acquire(key, ttl))
        return True

    async def release(self, key: str) -> None:
        # Not through _back: releasing a lock never taken does no I/O, so its success
        # says nothing about the back's health.
        if isinstance(self.back, DistributedLock):
            await self.back.release(key)

    async def note_waiting(self, key: str, ttl: float) -> None:
        if isinstance(self.back, DistributedLock):
            await self._back(self.back.note_waiting(key, ttl))

    async def has_waiters(self, key: str) -> bool:
        if isinstance(self.back, DistributedLock):
            return await self._back(self.back.has_waiters(key))
        return False
