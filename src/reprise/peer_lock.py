"""Single-flight across processes: one producer per key among gateway instances sharing a store.

Only the in-process leader of a miss asks (:mod:`reprise.coalesce` comes first). It takes
a short lock on the key in the shared store (:class:`~reprise.backends.base.DistributedLock`,
Redis); a process that finds the lock taken polls the store for the holder's answer, and
produces itself if the lock is freed without an answer or ``lock_timeout`` passes. So
identical misses on N instances cost one upstream call where practical, and at worst N.
A failing store never blocks: the fault is counted and the caller produces.

A waiting process marks itself in the store (:data:`WAIT_MARK_SECONDS`, renewed while it
waits), so the holder can tell whether its answer is awaited (:meth:`PeerLock.awaited`): a
streaming holder far behind its own client is then held to the short stall budget only when
someone waits (:mod:`reprise.stream_lead`). Found from outside: without it every led stream
behind a peer lock was cut off after 2 s behind, a client reading steadily at 1 MiB/s included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from reprise.backends.base import DistributedLock
from reprise.errors import BackendError
from reprise.outage import LOCK

if TYPE_CHECKING:
    from reprise.store_access import StoreAccess

T = TypeVar("T")

WAIT_MARK_SECONDS = 1.5
"""How long a waiter's mark lasts; renewed at least every :data:`WAIT_MARK_RENEW` seconds while it waits."""
WAIT_MARK_RENEW = 0.5


class PeerLock:
    """The lock protocol over one store; faults are reported to its :class:`StoreAccess`."""

    def __init__(self, lock: DistributedLock, access: StoreAccess) -> None:
        self.lock = lock
        self.access = access

    @asynccontextmanager
    async def turn(self, key: str, stored: Callable[[], Awaitable[T | None]]) -> AsyncIterator[T | None]:
        """Yield what another process stored meanwhile (serve it), or None: produce it now,
        and the lock is freed when the block ends. ``stored`` reads the answer from the store."""
        held = await self._acquire(key)
        found = None
        if not held:
            found, held = await self._await_holder(key, stored)
        try:
            yield found
        finally:
            if held:
                try:
                    await self.lock.release(key)
                except BackendError as exc:
                    self.access.fault(exc, "release", LOCK)
                else:
                    self.access.succeeded(LOCK)

    async def _acquire(self, key: str) -> bool:
        """True if this process may produce: lock won, or the store is failing."""
        try:
            won = await self.lock.acquire(key, self.lock.lock_timeout)
        except BackendError as exc:
            self.access.fault(exc, "lock", LOCK)
            return True
        self.access.succeeded(LOCK)
        return won

    async def awaited(self, key: str) -> bool:
        """Whether another process waits for this holder's answer of ``key`` (True when the store fails:
        the cautious answer, since a waiter left waiting holds a client)."""
        try:
            found = await self.lock.has_waiters(key)
        except BackendError as exc:
            self.access.fault(exc, "lock", LOCK)
            return True
        self.access.succeeded(LOCK)
        return found

    async def _mark_waiting(self, key: str) -> None:
        try:
            await self.lock.note_waiting(key, WAIT_MARK_SECONDS)
        except BackendError as exc:
            self.access.fault(exc, "lock", LOCK)  # unseen then: the holder's lone budget ends before our wait
        else:
            self.access.succeeded(LOCK)

    async def _await_holder(self, key: str, stored: Callable[[], Awaitable[T | None]]) -> tuple[T | None, bool]:
        """Poll for the holder's answer: (answer, False), or (None, held) once we should produce."""
        deadline = time.monotonic() + self.lock.lock_timeout
        delay = 0.01
        marked = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() - marked >= WAIT_MARK_RENEW:
                marked = time.monotonic()
                await self._mark_waiting(key)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            found = await stored()
            if found is not None:
                return found, False
            if await self._acquire(key):  # freed without an answer: our turn
                return None, True
        return None, False
