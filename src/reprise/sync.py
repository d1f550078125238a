"""``Cache``: the synchronous face of :class:`~reprise.cache.AsyncCache`.

Same method names, no second copy of the logic: the facade owns a private event
loop on a daemon thread and submits the async methods to it. The user's blocking
``call`` runs in that loop's thread pool, so identical concurrent misses from many
threads are still coalesced into one call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from reprise.backends.base import Backend
from reprise.cache import AsyncCache, CacheResult, CacheStats
from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePolicy

T = TypeVar("T")


class Cache:
    """Blocking cache for scripts and threaded apps; see :class:`AsyncCache`."""

    def __init__(self, backend: Backend | None = None, policy: CachePolicy | None = None) -> None:
        self._async = AsyncCache(backend, policy)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reprise-cache", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def stats(self) -> CacheStats:
        return self._async.stats

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this Cache is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

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

    def close(self) -> None:
        if self._closed:
            return
        self._run(self._async.aclose())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
