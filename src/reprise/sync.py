"""``Cache``: the synchronous face of :class:`~reprise.cache.AsyncCache`.

Same method names, no second copy of the logic: the facade owns a private event
loop on a daemon thread and submits the async methods to it. The user's blocking
``call`` runs in that loop's thread pool, so identical concurrent misses from many
threads are still coalesced into one call.

:meth:`Cache.close` never strands a caller: it refuses new calls at once, lets the calls in
flight in other threads finish for up to ``timeout`` seconds, then cancels those still
waiting (each raises "closed while this call was in flight") before it stops the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from reprise.backends.base import Backend
from reprise.cache import AsyncCache, CacheResult, CacheStats
from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePolicy

T = TypeVar("T")

#: How long :meth:`Cache.close` lets the task it cancels end (a cancelled wait ends at once).
_CANCEL_GRACE = 5.0


class Cache:
    """Blocking cache for scripts and threaded apps; see :class:`AsyncCache`."""

    def __init__(self, backend: Backend | None = None, policy: CachePolicy | None = None) -> None:
        self._async = AsyncCache(backend, policy)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reprise-cache", daemon=True)
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()
        self._in_flight: set[concurrent.futures.Future[Any]] = set()

    @property
    def stats(self) -> CacheStats:
        return self._async.stats

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:  # close() sees every call submitted before it, and refuses the rest
            if self._closed:
                coro.close()
                raise RuntimeError("this Cache is closed")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._in_flight.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if future.cancelled():  # only close() cancels; else it is what ``call`` raised
                raise RuntimeError("the Cache was closed while this call was in flight") from None
            raise
        finally:
            with self._lock:
                self._in_flight.discard(future)

    def chat(self, request: dict[str, Any], call: Callable[[dict[str, Any]], Any]) -> CacheResult:
        """Like :meth:`AsyncCache.chat` with a blocking ``call``."""
        loop = self._loop

        async def acall(upstream_request: dict[str, Any]) -> Any:
            return await loop.run_in_executor(None, call, upstream_request)

        return self._run(self._async.chat(request, acall))

    def read(self, key: str, max_age: float | None = None) -> CacheEntry | None:
        return self._run(self._async.read(key, max_age))

    def delete(self, key: str) -> bool:
        return self._run(self._async.delete(key))

    def clear(self, namespace: str | None = None) -> int:
        return self._run(self._async.clear(namespace))

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new calls, wait up to ``timeout`` seconds for those in flight, then close.

        A call still running then is cancelled: its caller raises ``RuntimeError`` ("closed
        while this call was in flight") rather than wait for a loop that is gone. A blocking
        ``call`` cannot be interrupted: it ends in its own thread, and its answer is dropped.
        """
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) \
                or timeout < 0:
            raise ValueError(f"timeout must be a finite number of seconds >= 0, not {timeout!r}")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            in_flight = set(self._in_flight)
        concurrent.futures.wait(in_flight, timeout)
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        for future in in_flight:  # a task that would not end: its caller must not wait forever
            future.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Cancel every task of the private loop (callers still waiting, their productions), then
        close the store."""
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE)
        await self._async.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
