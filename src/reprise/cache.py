"""The driver: the one place that owns the cache protocol for every kind of answer.

For a single answer (:meth:`AsyncCache.get_or_produce`), a streamed one
(:meth:`AsyncCache.stream`) and a batch of items such as embeddings
(:meth:`AsyncCache.get_or_produce_many`) it runs, once, the same steps: read the store
→ second lookup (semantic, on an exact miss only) → follow an identical in-flight
production → re-read if one ended meanwhile → lead → cross-process lock → produce →
store → count. Handlers only translate HTTP: they hand in how to produce and get back
a hit, a shared outcome, or the lead.

A production runs in its own task and owns its flight (:mod:`reprise.coalesce`): a
leader whose client hangs up cancels nothing others wait for, and the result, answer
or failure, is shared with every follower, so N identical concurrent misses cost one
upstream call per process also when the call fails. One exception: a stream longer than
the recording bound (:data:`~reprise.core.answer_bounds.MAX_RECORDED_BYTES`) is forwarded
whole to its leader but not kept, so there is nothing to share; each request that waited
for it then makes its own provider call at once (in parallel, not stored), rather than
get an error for an answer the provider gave. Across processes, when the backend
is also a :class:`~reprise.backends.base.DistributedLock` (Redis), the production
first takes a short lock (:mod:`reprise.peer_lock`).

Store faults never fail a request (:mod:`reprise.store_access`): a read fault is a
miss, a write fault a skipped store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

from reprise.backends.base import Backend, DistributedLock
from reprise.coalesce import Flight, SingleFlight
from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePlan, CachePolicy
from reprise.driver_answers import Answer, BatchAnswer, CacheResult, StreamAnswer
from reprise.errors import UpstreamError
from reprise.library_chat import ChatCall, cached_chat
from reprise.outcome import BatchOutcome, Outcome, Shared, reraise
from reprise.peer_lock import PeerLock
from reprise.store_access import CacheStats, StoreAccess
from reprise.stream_lead import OPEN, SHARED_STALL_BUDGET, STALL_BUDGET, StreamLead, StreamSource

__all__ = ["AsyncCache", "Answer", "BatchAnswer", "CacheResult", "CacheStats", "Outcome", "SecondLookup",
           "StreamAnswer"]

log = logging.getLogger("reprise.cache")

T = TypeVar("T")
S = TypeVar("S")
P = TypeVar("P")
Producer = Callable[[], Awaitable[Outcome]]
#: Produces the items at the given positions of a batch, in one provider call.
BatchProducer = Callable[[list[int]], Awaitable[BatchOutcome]]
#: What an item's flight shares: its value, or the batch's failure.
ItemShared = bytes | Outcome | UpstreamError


class SecondLookup(Protocol):
    """A lookup tried only after an exact miss (the semantic cache), and told of new answers."""

    async def lookup(self) -> CacheEntry | None:
        """An acceptable earlier answer, or None."""
        ...

    async def remember(self, key: str) -> None:
        """Index the answer just stored under ``key`` (before the request's response ends)."""
        ...


class AsyncCache(StoreAccess):
    """Exact cache over one :class:`Backend`; shared by server and library."""

    def __init__(self, backend: Backend | None = None, policy: CachePolicy | None = None, **kwargs: Any) -> None:
        super().__init__(backend, policy, **kwargs)
        self.flights: SingleFlight[Any] = SingleFlight()
        self.peers: PeerLock | None = None
        """Cross-process single-flight, when the backend has an enabled lock."""
        if isinstance(self.backend, DistributedLock) and self.backend.lock_timeout > 0:
            self.peers = PeerLock(self.backend, self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` ran (:meth:`chat` then raises)."""
        return self._closed

    async def aclose(self) -> None:
        """Close the store; :meth:`chat` raises from now on (a call in flight still ends)."""
        self._closed = True
        await super().aclose()

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """A production task, kept referenced until done (never cancelled with its request)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- lookups shared by every kind of answer -----------------------------------------

    async def _lookup(self, key: str, plan: CachePlan, second: SecondLookup | None) -> tuple[CacheEntry | None, int]:
        """The stored (or semantically matched) entry, and the single-flight mark taken before."""
        mark = self.flights.mark()
        entry = await self.read(key, plan.max_age)
        if entry is None and second is not None:
            entry = await second.lookup()
        if entry is not None:
            self.stats.hits += 1
        return entry, mark

    async def _await_others(self, key: str, plan: CachePlan, mark: int) -> tuple[CacheEntry | None, Shared | None]:
        """Follow the flight for ``key`` until one shares a result, or re-read what one stored.

        (None, None) means: nobody produced it for us; lead.
        """
        while (flight := self.flights.current(key)) is not None:
            shared = await self.flights.follow(flight)
            if shared is not None:
                self.stats.coalesced += 1
                return None, shared
            mark = self.flights.mark()  # that flight left nothing to share: look again, then lead
            if (entry := await self.read(key, plan.max_age)) is not None:
                return entry, None
        if self.flights.ended_since(key, mark):
            # Our read may have left before that flight's write landed: read again, not upstream.
            return await self.read(key, plan.max_age), None
        return None, None

    # -- a single answer -----------------------------------------------------------------

    async def get_or_produce(self, key: str, plan: CachePlan, produce: Producer,
                             second: SecondLookup | None = None) -> Answer:
        """Serve from cache, or share an identical in-flight production, or produce and store.

        A provider failure (:class:`UpstreamError`) raises, for the leader and every follower.
        """
        if not plan.uses_cache:
            self.stats.bypasses += 1
            self.stats.upstream_calls += 1
            outcome = await produce()
            return Answer(outcome.status, outcome.body, "bypass", upstream_headers=outcome.headers)
        if not plan.read:  # no-cache: a fresh answer, stored for the others
            self.stats.bypasses += 1
            return _answer(await self._produce(key, plan, produce, second), "bypass")
        entry, mark = await self._lookup(key, plan, second)
        if entry is None:
            entry, shared = await self._await_others(key, plan, mark)
            if shared is not None:
                self.stats.misses += 1
                if isinstance(shared, Outcome) and shared.too_long:  # a stream too long to share
                    return _answer(await self._produce(key, plan, produce, second), "miss")
                await self._store_unstored(key, plan, shared, second)
                return _answer(shared, "miss")
        if entry is not None:
            return Answer(200, entry.body, "hit", entry)
        self.stats.misses += 1
        flight = self.flights.start(key)
        task = self._spawn(self._lead(flight, plan, produce, second))
        return _answer(await asyncio.shield(task), "miss")

    async def _lead(self, flight: Flight[Any], plan: CachePlan, produce: Producer,
                    second: SecondLookup | None) -> Shared:
        shared: Shared | None = None
        try:
            key = flight.key
            shared = await self._with_peers(key, plan, lambda: self._stored_outcome(key, plan),
                                            lambda: self._produce(key, plan, produce, second))
        finally:
            self.flights.finish(flight, shared)
        return shared

    async def _produce(self, key: str, plan: CachePlan, produce: Producer, second: SecondLookup | None) -> Shared:
        """Call the provider once; store a 2xx answer if the plan says so. Failures are values."""
        self.stats.upstream_calls += 1
        try:
            outcome = await produce()
        except UpstreamError as exc:
            return exc
        if outcome.ok and outcome.storable and plan.store:
            await self._store(key, plan, outcome.body, outcome.meta, second)
            return replace(outcome, stored=True)
        return outcome

    async def _store_unstored(self, key: str, plan: CachePlan, shared: Shared, second: SecondLookup | None) -> None:
        """A follower stores the answer it shared when the leader's plan did not (``no-store``)
        and its own does: else the next identical request would call the provider again."""
        if isinstance(shared, Outcome) and plan.store and shared.ok and shared.storable and not shared.stored:
            await self._store(key, plan, shared.body, shared.meta, second, shared.recording)

    async def _store(self, key: str, plan: CachePlan, body: bytes, meta: dict[str, Any],
                     second: SecondLookup | None, recording: bytes = b"") -> None:
        if await self.write(key, self.make_entry(body, plan.ttl, meta, recording)) and second is not None:
            await second.remember(key)

    async def _with_peers(self, lock_key: str, plan: CachePlan, stored: Callable[[], Awaitable[S | None]],
                          produce: Callable[[], Awaitable[P]]) -> S | P:
        """``produce()``, unless another process holding the lock on ``lock_key`` stores the
        answer meanwhile: then what ``stored()`` reads of it."""
        if self.peers is None or not plan.store:
            return await produce()
        async with self.peers.turn(lock_key, stored) as found:
            if found is None:
                return await produce()
        self.stats.coalesced += 1
        return found

    async def _stored_outcome(self, key: str, plan: CachePlan) -> Outcome | None:
        entry = await self.read(key, plan.max_age)
        return None if entry is None else Outcome(200, bytes(entry.body), stored=True,
                                                  recording=bytes(entry.recording))

    # -- a streamed answer ---------------------------------------------------------------

    async def stream(self, key: str | None, plan: CachePlan, source: Callable[[], StreamSource],
                     second: SecondLookup | None = None) -> StreamAnswer:
        """Like :meth:`get_or_produce` for a streamed answer; the lead's events are forwarded
        by the caller while the driver reassembles and stores them. ``source`` is called only
        when this request leads (a hit costs no assembler).

        A complete stream is stored as the equivalent plain answer (the two share an entry).
        """
        if key is None or not plan.uses_cache:
            self.stats.bypasses += 1
            return StreamAnswer("bypass", lead=self._start_stream(None, None, plan, source, None))
        if not plan.read:
            self.stats.bypasses += 1
            return StreamAnswer("bypass", lead=self._start_stream(key, None, plan, source, second))
        entry, mark = await self._lookup(key, plan, second)
        if entry is None:
            entry, shared = await self._await_others(key, plan, mark)
            if shared is not None:
                self.stats.misses += 1
                if isinstance(shared, UpstreamError):
                    raise reraise(shared)
                if shared.too_long:  # nothing kept to share: a stream of its own, neither coalesced nor stored
                    return StreamAnswer("miss", lead=self._start_stream(None, None, plan, source, None))
                await self._store_unstored(key, plan, shared, second)
                return StreamAnswer("miss", shared=shared)
        if entry is not None:
            return StreamAnswer("hit", entry=entry)
        self.stats.misses += 1
        return StreamAnswer("miss", lead=self._start_stream(key, self.flights.start(key), plan, source, second))

    def _start_stream(self, key: str | None, flight: Flight[Any] | None, plan: CachePlan,
                      source: Callable[[], StreamSource], second: SecondLookup | None) -> StreamLead:
        lead = StreamLead()
        task = self._spawn(self._lead_stream(lead, key, flight, plan, source(), second))

        # Other processes may wait on this answer's peer lock (found from outside: a worker or
        # instance waited its lock_timeout, 10 s, behind a leader that did not read, then called the
        # provider too): the store says whether one does (peer_lock.py), and then the shorter
        # stall budget applies (stream_lead.py).
        peers = self.peers if key is not None and plan.store else None
        peers_may_wait = peers is not None

        def detach() -> None:  # the leader's client left: stop unless others wait for the answer
            if lead.too_slow and peers_may_wait:
                return  # cut off for being slow, not gone: produce on, and store, for them
            if flight is None or flight.followers == 0:
                task.cancel()

        async def others_wait() -> bool:
            if flight is not None and flight.followers > 0:
                return True
            return peers is not None and key is not None and await peers.awaited(key)

        lead._detach = detach
        lead._others_wait = others_wait
        if peers is not None:  # a waiter not seen (its mark not yet written, or the store failing) gives up
            # after lock_timeout and calls the provider itself: the lone budget ends 2 s before that
            lead.lone_budget = max(SHARED_STALL_BUDGET, min(STALL_BUDGET, peers.lock.lock_timeout - 2.0))
        return lead

    async def _lead_stream(self, lead: StreamLead, key: str | None, flight: Flight[Any] | None,
                           plan: CachePlan, source: StreamSource, second: SecondLookup | None) -> None:
        shared: Shared | None = None
        try:
            if key is None:
                shared = await self._pump(lead, None, plan, source, None)
            else:
                async def stored_by_peer() -> Outcome | None:  # the lead replays it
                    outcome = await self._stored_outcome(key, plan)
                    if outcome is not None:
                        lead.put(outcome)
                    return outcome

                shared = await self._with_peers(key, plan, stored_by_peer,
                                                lambda: self._pump(lead, key, plan, source, second))
        except Exception as exc:  # nobody awaits this task: the leader's handler must still be told
            log.exception("producing a streamed answer failed")
            lead.finish_with(exc)
        finally:
            # The flight ends before the leader's client sees the end of its stream, so a request
            # it sends right after never joins this finished production (it leads anew or hits).
            if flight is not None:
                self.flights.finish(flight, shared)
            lead.release_end()

    async def _pump(self, lead: StreamLead, key: str | None, plan: CachePlan, source: StreamSource,
                    second: SecondLookup | None) -> Shared:
        """Forward the provider's stream into ``lead``; store it if it completed. The result is shared."""
        self.stats.upstream_calls += 1
        assembler = source.assembler
        try:
            async with source.open() as reply:
                if reply.status >= 300:
                    failed = Outcome(reply.status, reply.error_body, headers=reply.headers)
                    lead.finish_with(failed)
                    return failed
                lead.upstream_headers = reply.headers
                lead.put(OPEN)
                tail: list[bytes] = []  # from [DONE] on: forwarded once the answer is stored
                async for piece in reply.chunks:
                    events = assembler.feed(piece)
                    if events and assembler.done:
                        tail.extend(events)
                    elif events:
                        lead.put(b"".join(events))
                        await lead.keep_pace()  # a client far behind holds the provider back, for a while
        except UpstreamError as exc:
            lead.finish_with(exc)
            return exc
        if not assembler.complete:
            incomplete = UpstreamError("the provider's stream ended before the answer was complete")
            # Ended before its last event (a clean HTTP end is no proof of a whole answer): the
            # client is told the stream broke, as for a dropped connection.
            lead.finish_with(b"".join(tail) if assembler.done else incomplete)
            if assembler.done and assembler.overflow:
                return _TOO_LONG  # whole, but too long to keep: the followers produce their own
            whole = assembler.unstored_body()
            return incomplete if whole is None else Outcome(200, whole, storable=False)
        completion = assembler.completion()
        body, recording = assembler.stored_body(completion), assembler.recording()
        if not (source.storable and reply.storable()):  # whole as a stream, but not an answer to keep
            lead.finish_with(b"".join(tail))
            return Outcome(200, body, storable=False, recording=recording)
        meta = source.describe(completion)
        # Stored before [DONE] is sent, as a plain answer is stored before it is sent: a client
        # that repeats the request as soon as it has read [DONE] gets a hit, also on a slow store.
        stored = key is not None and plan.store
        if key is not None and plan.store:
            await self._store(key, plan, body, meta, second, recording)
        lead.finish_with(b"".join(tail))
        return Outcome(200, body, meta, stored=stored, recording=recording)

    # -- a batch of items (embeddings) -------------------------------------------------------

    async def get_or_produce_many(self, keys: Sequence[str], plan: CachePlan,
                                  produce: BatchProducer) -> BatchAnswer:
        """Each item its own entry and its own flight; only the missing unique items are produced,
        in one call. A provider status error is the answer's ``failure``; an unreachable provider raises.
        """
        if not plan.uses_cache:  # still one provider item per distinct input
            self.stats.bypasses += 1
            self.stats.upstream_calls += 1
            first = _first_positions(keys)
            got = await produce(list(first.values()))
            if not got.ok:
                return BatchAnswer("bypass", failure=Outcome(got.status, got.body))
            values = dict(zip(first, got.values, strict=True))
            return BatchAnswer("bypass", [values[key] for key in keys], [False] * len(keys), got.usage)
        entries = await self.read_many(keys, plan.max_age) if plan.read else [None] * len(keys)
        known = {key: bytes(entry.body) for key, entry in zip(keys, entries, strict=True) if entry is not None}
        from_cache = [key in known for key in keys]
        missing = list(dict.fromkeys(key for key in keys if key not in known))
        self.stats.hits += sum(from_cache)
        word = "miss" if plan.read else "bypass"
        if plan.read:
            self.stats.misses += len(missing)
        else:
            self.stats.bypasses += 1
        usage = None
        if missing:
            failure, usage = await self._fill(keys, missing, known, plan, produce)
            if failure is not None:
                return BatchAnswer(word, failure=failure)
        return BatchAnswer("hit" if not missing else word, [known[key] for key in keys], from_cache, usage)

    async def _fill(self, keys: Sequence[str], missing: list[str], known: dict[str, bytes], plan: CachePlan,
                    produce: BatchProducer) -> tuple[Outcome | None, bytes | None]:
        """Put a value for every ``missing`` key in ``known``: followed, re-read or produced."""
        usage = None
        first = _first_positions(keys)
        for _ in range(3):  # a flight that ends with nothing to share is tried again, then led
            waits = {key: flight for key in missing
                     if plan.read and (flight := self.flights.current(key)) is not None}
            lead = [key for key in missing if key not in waits]
            task = None
            if lead:
                flights = [self.flights.start(key) for key in lead]
                positions = [first[key] for key in lead]
                task = self._spawn(self._lead_batch(flights, positions, plan, produce))
            results: dict[str, ItemShared | None] = {}
            for key, flight in waits.items():
                results[key] = await self.flights.follow(flight)
                if results[key] is not None:
                    self.stats.coalesced += 1
            if task is not None:
                shared, usage = await asyncio.shield(task)
                results.update(shared)
            for result in results.values():
                if isinstance(result, UpstreamError):
                    raise reraise(result)
                if isinstance(result, Outcome):
                    return result, None
            known.update((key, value) for key, value in results.items() if isinstance(value, bytes))
            missing = [key for key in missing if key not in known]
            if not missing:
                return None, usage
        raise UpstreamError("the provider's answer for this batch could not be shared")

    async def _lead_batch(self, flights: list[Flight[Any]], positions: list[int], plan: CachePlan,
                          produce: BatchProducer) -> tuple[dict[str, ItemShared | None], bytes | None]:
        keys = [flight.key for flight in flights]
        shared: dict[str, ItemShared | None] = dict.fromkeys(keys)
        usage = None
        try:
            got = await self._produce_batch(keys, positions, plan, produce)
            if isinstance(got, BatchOutcome):
                usage = got.usage
                shared = dict(zip(keys, got.values, strict=True))
            else:
                shared = dict.fromkeys(keys, got)
        finally:
            for flight in flights:
                self.flights.finish(flight, shared.get(flight.key))
        return shared, usage

    async def _produce_batch(self, keys: list[str], positions: list[int], plan: CachePlan,
                             produce: BatchProducer) -> BatchOutcome | Shared:
        """One provider call for ``keys`` (or the values another process stored meanwhile)."""
        lock_key = "batch:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()
        return await self._with_peers(lock_key, plan, lambda: self._read_all(keys, plan),
                                      lambda: self._call_batch(keys, positions, plan, produce))

    async def _read_all(self, keys: list[str], plan: CachePlan) -> BatchOutcome | None:
        entries = await self.read_many(keys, plan.max_age)
        if any(entry is None for entry in entries):
            return None
        return BatchOutcome(200, values=tuple(bytes(entry.body) for entry in entries if entry is not None))

    async def _call_batch(self, keys: list[str], positions: list[int], plan: CachePlan,
                          produce: BatchProducer) -> BatchOutcome | Shared:
        self.stats.upstream_calls += 1
        try:
            got = await produce(positions)
        except UpstreamError as exc:
            return exc
        if not got.ok:
            return Outcome(got.status, got.body)
        if plan.store and got.storable:
            for key, value in zip(keys, got.values, strict=True):
                await self.write(key, self.make_entry(value, plan.ttl, got.meta))
        return got

    # -- the library's entry point ---------------------------------------------------

    async def chat(self, request: dict[str, Any], call: ChatCall) -> CacheResult:
        """Answer a chat-completion ``request`` from the cache, or by awaiting ``call(request)``.

        ``call`` gets the request without its ``cache`` controls and returns the
        response as a dict (or an object with ``model_dump()``, as the OpenAI SDK
        returns). An exception from ``call`` propagates to every caller waiting for
        that answer, and nothing is stored. Only a finished chat completion is stored (every
        choice has a ``finish_reason``, no ``error``): anything else ``call`` returns is passed
        back to the callers as it is, and asked for again next time.
        """
        return await cached_chat(self, request, call)


#: What a stream too long to keep shares (:attr:`Outcome.too_long`): the requests that waited
#: for it produce their own answer, since nothing of it is left to send them.
_TOO_LONG = Outcome(200, b"", storable=False, too_long=True)


def _first_positions(keys: Sequence[str]) -> dict[str, int]:
    """Each distinct key and the position of its first occurrence, in order of appearance."""
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return first


def _answer(shared: Shared, word: str) -> Answer:
    if isinstance(shared, UpstreamError):
        raise reraise(shared)
    return Answer(shared.status, shared.body, word, upstream_headers=shared.headers)
