"""The driver's miss protocol, in process over a real memory store: one production per key,
its result (answer or failure) shared with every follower, never cancelled by a leader's
hang-up while others wait; batches produce each missing unique item once.

The producers below stand in for the provider (they are the caller's code, not ours);
the HTTP tests (tests/server/test_failure_sharing.py) check the same through real processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from reprise.cache import AsyncCache
from reprise.core.policy import CachePlan
from reprise.core.streaming import StreamAssembler
from reprise.errors import UpstreamError
from reprise.outcome import BatchOutcome, Outcome
from reprise.stream_lead import StreamReply, StreamSource

PLAN = CachePlan(read=True, store=True, ttl=60, max_age=None, namespace=None)
NO_STORE = CachePlan(read=True, store=False, ttl=60, max_age=None, namespace=None)
ANSWER = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}


class Provider:
    """Counts calls; answers after ``delay`` with ``outcome`` or raises ``failure``."""

    def __init__(self, delay: float = 0.05, outcome: Outcome | None = None,
                 failure: UpstreamError | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.outcome = outcome or Outcome(200, orjson.dumps(ANSWER))
        self.failure = failure

    async def __call__(self) -> Outcome:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return self.outcome


async def test_identical_misses_share_one_call_and_the_answer() -> None:
    cache, provider = AsyncCache(), Provider()
    answers = await asyncio.gather(*(cache.get_or_produce("k", PLAN, provider) for _ in range(8)))
    assert provider.calls == 1
    assert {a.body for a in answers} == {provider.outcome.body}
    assert (await cache.get_or_produce("k", PLAN, provider)).cache_status == "hit"


@pytest.mark.parametrize("failure", [UpstreamError("model 'm': timed out", 504),
                                     UpstreamError("model 'm': could not be reached")])
async def test_a_failed_production_is_shared_not_repeated(failure: UpstreamError) -> None:
    cache, provider = AsyncCache(), Provider(failure=failure)
    results = await asyncio.gather(*(cache.get_or_produce("k", PLAN, provider) for _ in range(8)),
                                   return_exceptions=True)
    assert provider.calls == 1
    assert all(isinstance(r, UpstreamError) and r.status == failure.status for r in results)
    assert len({id(r) for r in results}) == 8  # each follower raises its own copy
    provider.failure = None
    assert (await cache.get_or_produce("k", PLAN, provider)).cache_status == "miss"  # the next one leads anew
    assert provider.calls == 2


async def test_a_provider_error_status_is_shared_and_not_stored() -> None:
    cache = AsyncCache()
    provider = Provider(outcome=Outcome(500, b'{"error": {"message": "boom"}}'))
    answers = await asyncio.gather(*(cache.get_or_produce("k", PLAN, provider) for _ in range(8)))
    assert provider.calls == 1
    assert {(a.status, a.cache_status) for a in answers} == {(500, "miss")}
    assert await cache.read("k") is None


async def test_a_leader_that_hangs_up_does_not_cancel_what_followers_wait_for() -> None:
    cache, provider = AsyncCache(), Provider(delay=0.1)
    leader = asyncio.create_task(cache.get_or_produce("k", PLAN, provider))
    await asyncio.sleep(0.01)
    followers = [asyncio.create_task(cache.get_or_produce("k", PLAN, provider)) for _ in range(3)]
    await asyncio.sleep(0.01)
    leader.cancel()
    answers = await asyncio.gather(*followers)
    assert provider.calls == 1
    assert {a.status for a in answers} == {200}
    assert await cache.read("k") is not None


async def test_no_store_followers_share_without_storing() -> None:
    cache, provider = AsyncCache(), Provider()
    answers = await asyncio.gather(*(cache.get_or_produce("k", NO_STORE, provider) for _ in range(5)))
    assert provider.calls == 1 and {a.status for a in answers} == {200}
    assert await cache.read("k") is None


class BatchProvider:
    def __init__(self, fail: Outcome | None = None) -> None:
        self.asked: list[list[int]] = []
        self.fail = fail

    async def __call__(self, positions: list[int]) -> BatchOutcome:
        self.asked.append(positions)
        await asyncio.sleep(0.05)
        if self.fail is not None:
            return BatchOutcome(self.fail.status, self.fail.body)
        return BatchOutcome(200, values=tuple(b"[%d]" % p for p in positions), usage=b"{}")


async def test_a_batch_produces_each_missing_unique_item_once() -> None:
    cache, provider = AsyncCache(), BatchProvider()
    await cache.write("b", cache.make_entry(b"[9]", 60, {}))
    answer = await cache.get_or_produce_many(["a", "b", "a", "c", "c"], PLAN, provider)
    assert provider.asked == [[0, 3]]
    assert answer.values == [b"[0]", b"[9]", b"[0]", b"[3]", b"[3]"]
    assert answer.from_cache == [False, True, False, False, False]


async def test_overlapping_batches_share_items_and_failures() -> None:
    cache, provider = AsyncCache(), BatchProvider()
    first, second = await asyncio.gather(cache.get_or_produce_many(["a", "b"], NO_STORE, provider),
                                         cache.get_or_produce_many(["b", "c"], NO_STORE, provider))
    assert sorted(map(len, provider.asked)) == [1, 2]  # "b" produced once, by the first batch
    assert first.values[1] == second.values[0]
    failing = BatchProvider(fail=Outcome(500, b'{"error": {}}'))
    answers = await asyncio.gather(*(cache.get_or_produce_many(["x", "y"], PLAN, failing) for _ in range(6)))
    assert len(failing.asked) == 1
    assert {a.failure.status if a.failure else None for a in answers} == {500}


class Stream:
    """A provider stream of ``pieces`` SSE events, ``gap`` seconds apart."""

    def __init__(self, gap: float = 0.05) -> None:
        self.calls = 0
        self.gap = gap

    def source(self) -> StreamSource:
        return StreamSource(open=self.open, assembler=StreamAssembler(), describe=lambda c: {"kind": "chat"})

    @asynccontextmanager
    async def open(self) -> AsyncIterator[StreamReply]:
        self.calls += 1

        async def chunks() -> AsyncIterator[bytes]:
            base = {"id": "s", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": "hel"}, None),
                                  ({"content": "lo"}, None), ({}, "stop")):
                await asyncio.sleep(self.gap)
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                yield b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        yield StreamReply(200, b"", chunks())


async def test_a_stream_whose_leader_leaves_alone_is_abandoned_and_not_stored() -> None:
    cache, stream = AsyncCache(), Stream()
    answer = await cache.stream("k", PLAN, stream.source)
    assert answer.lead is not None and await answer.lead.opened() is None
    answer.lead.detach()
    await asyncio.sleep(0.4)
    assert await cache.read("k") is None


async def test_a_stream_whose_leader_leaves_is_finished_for_its_followers() -> None:
    cache, stream = AsyncCache(), Stream()
    answer = await cache.stream("k", PLAN, stream.source)
    assert answer.lead is not None
    followers = [asyncio.create_task(cache.stream("k", PLAN, stream.source)) for _ in range(3)]
    await asyncio.sleep(0.06)
    answer.lead.detach()
    shared = await asyncio.gather(*followers)
    assert stream.calls == 1
    assert {orjson.loads(s.shared.body)["choices"][0]["message"]["content"] for s in shared if s.shared} == {"hello"}
    assert all(s.shared is not None for s in shared)
    assert (await cache.stream("k", PLAN, stream.source)).cache_status == "hit"


async def test_an_unexpected_failure_of_a_stream_reaches_its_leader_instead_of_hanging() -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[StreamReply]:
        raise ValueError("a bug")
        yield  # pragma: no cover

    cache = AsyncCache()
    answer = await cache.stream("k", PLAN, lambda: StreamSource(open=broken, assembler=StreamAssembler(),
                                                                describe=lambda c: {}))
    assert answer.lead is not None
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(answer.lead.opened(), 5)
    assert cache.flights.current("k") is None


async def test_a_stream_has_left_its_flight_when_its_client_sees_the_end() -> None:
    """Found in CI (Redis): a request sent right after a stream ended joined the finishing
    production and shared its failure instead of calling the provider again."""
    cache, stream = AsyncCache(), Stream(gap=0)
    answer = await cache.stream("k", PLAN, stream.source)
    assert answer.lead is not None and await answer.lead.opened() is None
    async for _ in answer.lead.events():
        pass
    assert cache.flights.current("k") is None


async def test_a_value_that_is_not_an_entry_reads_as_a_miss_and_is_replaced() -> None:
    from reprise.backends.memory import MemoryBackend

    store = MemoryBackend()
    cache, provider = AsyncCache(store), Provider(delay=0)
    await store.set("k", b"not an entry", None)
    for _ in range(2):  # the decoded form of a corrupt value is "absent", every time
        assert (await cache.get_or_produce("k", PLAN, provider)).cache_status == "miss"
        await store.set("k", b"not an entry", None)
    assert provider.calls == 2
    await store.delete("k")
    assert (await cache.get_or_produce("k", PLAN, provider)).cache_status == "miss"
    hit = await cache.get_or_produce("k", PLAN, provider)
    assert hit.cache_status == "hit" and hit.body == provider.outcome.body and provider.calls == 3


async def test_a_follower_that_stores_stores_what_a_no_store_leader_produced() -> None:
    """Was: a ``no-store`` request leading made its normal followers' answer unstored too,
    so the next identical request called the provider again."""
    cache, provider = AsyncCache(), Provider()
    leader = asyncio.ensure_future(cache.get_or_produce("k", NO_STORE, provider))
    await asyncio.sleep(0.01)  # the leader's call is in flight
    follower = await cache.get_or_produce("k", PLAN, provider)
    assert (await leader).cache_status == "miss" and follower.cache_status == "miss" and provider.calls == 1
    again = await cache.get_or_produce("k", PLAN, provider)
    assert again.cache_status == "hit" and again.body == provider.outcome.body and provider.calls == 1


async def test_a_stream_follower_that_stores_stores_what_a_no_store_leader_produced() -> None:
    cache = AsyncCache()
    opened: list[int] = []

    @asynccontextmanager
    async def open_stream() -> AsyncIterator[StreamReply]:
        opened.append(1)

        async def chunks() -> AsyncIterator[bytes]:
            await asyncio.sleep(0.05)
            yield b"data: " + orjson.dumps({**ANSWER, "object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        yield StreamReply(200, b"", chunks())

    def source() -> StreamSource:
        return StreamSource(open=open_stream, assembler=StreamAssembler(), describe=lambda completion: {})

    lead = await cache.stream("k", NO_STORE, source)
    assert lead.lead is not None
    follow = asyncio.ensure_future(cache.stream("k", PLAN, source))
    await asyncio.sleep(0.01)
    assert await lead.lead.opened() is None
    async for _ in lead.lead.events():
        pass
    assert (await follow).shared is not None and len(opened) == 1
    assert (await cache.stream("k", PLAN, source)).cache_status == "hit" and len(opened) == 1
