"""The single-flight window a networked store opens: a read sent before the leader's
write lands comes back "absent" after the leader has left. It must not cost a second
upstream call (seen with Azurite and S3: back-to-back identical streams)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from reprise.backends.base import Capabilities
from reprise.backends.memory import MemoryBackend
from reprise.cache import AsyncCache, Outcome
from reprise.core.policy import CachePlan


class InFlightReads:
    """A real memory store whose reads, like a network store's, answer from the moment they were sent
    but arrive ``delay`` seconds later."""

    name = "delayed-memory"
    capabilities = Capabilities(native_ttl=True, shared=True, persistent=False)

    def __init__(self, delay: float) -> None:
        self.inner = MemoryBackend()
        self.delay = delay
        self.reads = 0

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        value = await self.inner.get(key)  # the store's state when the request left
        await asyncio.sleep(self.delay)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def clear(self, namespace: str | None = None) -> int:
        return await self.inner.clear(namespace)

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        async for key in self.inner.keys(namespace):
            yield key

    async def aclose(self) -> None:
        await self.inner.aclose()


PLAN = CachePlan(read=True, store=True, ttl=60, max_age=None, namespace=None)


async def test_a_read_that_overlapped_the_leaders_write_reads_again_instead_of_calling_upstream() -> None:
    store = InFlightReads(delay=0.05)
    cache = AsyncCache(store)
    calls = 0

    async def produce() -> Outcome:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return Outcome(200, b'{"answer": 42}')

    leader = asyncio.create_task(cache.get_or_produce("k", PLAN, produce))
    await asyncio.sleep(0.001)  # the leader is reading; it will produce at ~50 ms and leave at ~60 ms
    await asyncio.sleep(0.055)  # our read leaves before the leader's write and returns after it left
    late = await cache.get_or_produce("k", PLAN, produce)
    first = await leader
    assert calls == 1
    assert first.body == late.body == b'{"answer": 42}'
    assert late.cache_status == "hit"
    await cache.aclose()


async def test_without_a_recent_flight_a_miss_costs_one_read() -> None:
    store = InFlightReads(delay=0.0)
    cache = AsyncCache(store)

    async def produce() -> Outcome:
        return Outcome(200, b"{}")

    await cache.get_or_produce("a", PLAN, produce)
    reads = store.reads
    await cache.get_or_produce("b", PLAN, produce)  # a flight for "a" ended, not for "b"
    assert store.reads - reads == 1
    await cache.aclose()
