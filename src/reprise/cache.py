"""The driver: reads the store, asks the core, produces answers, stores them, fails open.

:class:`AsyncCache` is the one place where cache I/O is awaited. The HTTP server and
the Python library both sit on it. Every backend call goes through :meth:`read`,
:meth:`read_many` or :meth:`write`, which turn a :class:`BackendError` into a miss or
a skipped store (fail open), count it, and log one warning per outage rather than one
per request (the next success logs the recovery).

Single-flight has two levels. In process, identical misses follow one leader
(:mod:`reprise.coalesce`). Across processes, when the backend is also a
:class:`~reprise.backends.base.DistributedLock` (Redis), that leader takes a short
lock before producing; a leader that finds the lock taken polls the cache for the
holder's answer, and produces itself if the lock is freed without an answer or
``lock_timeout`` passes (:meth:`AsyncCache.peer_flight`). So identical misses on
N instances cost one upstream call where practical, and at worst N.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.backends.base import Backend, DistributedLock, StartupCheck
from reprise.coalesce import SingleFlight
from reprise.core.controls import parse_controls
from reprise.core.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from reprise.core.keys import chat_key_hash, storage_key
from reprise.core.policy import CachePlan, CachePolicy, decide, expiry_time, is_usable
from reprise.core.request import require_model, require_object, validate_chat
from reprise.errors import BackendError

log = logging.getLogger("reprise.cache")


@dataclass(slots=True)
class CacheStats:
    """Counters since start; read by the server's stats and tests."""

    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    stores: int = 0
    coalesced: int = 0
    backend_errors: int = 0
    upstream_calls: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A produced answer: upstream status and body, and whether it may be stored."""

    status: int
    body: bytes
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Producer = Callable[[], Awaitable[Outcome]]
#: A second lookup tried only after an exact miss (the semantic cache); None when it finds nothing.
Fallback = Callable[[], Awaitable[CacheEntry | None]]
ChatCall = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class CacheResult:
    """The library's answer: the response dict and what the cache did for it."""

    response: dict[str, Any]
    status: str  # "hit" | "miss" | "bypass"
    key: str | None
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What :meth:`AsyncCache.get_or_produce` returns: the body and how it was obtained."""

    status: int
    body: bytes
    cache_status: str  # "hit" | "miss" | "bypass"
    entry: CacheEntry | None = None


class AsyncCache:
    """Exact cache over one :class:`Backend`; shared by server and library."""

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
        self.flights: SingleFlight[Outcome] = SingleFlight()
        self._failing = False
        self.lock: DistributedLock | None = None
        """The backend's cross-process lock, if it has one that is enabled."""
        if isinstance(backend, DistributedLock) and backend.lock_timeout > 0:
            self.lock = backend

    # -- fail-open backend access -------------------------------------------------

    def _fault(self, exc: BackendError, action: str) -> None:
        self.stats.backend_errors += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "cache backend %s failed on %s (%s); serving from upstream until it recovers",
                self.backend.name, action, exc,
            )

    def _recovered(self) -> None:
        # A backend with a local tier answers from memory while its shared store is
        # down; ``degraded`` says so, and such a success does not end the outage.
        if self._failing and not getattr(self.backend, "degraded", False):
            self._failing = False
            log.warning("cache backend %s recovered", self.backend.name)

    def _usable(self, raw: bytes | None, max_age: float | None, now: float) -> CacheEntry | None:
        if raw is None:
            return None
        try:
            entry = decode_entry(raw)
        except EntryFormatError:
            return None
        return entry if is_usable(entry, now, max_age) else None

    async def read(self, key: str, max_age: float | None = None) -> CacheEntry | None:
        """The usable entry for ``key``, or None (absent, stale, corrupt, or store down)."""
        try:
            raw = await self.backend.get(key)
        except BackendError as exc:
            self._fault(exc, "get")
            return None
        if self._failing:
            self._recovered()
        return self._usable(raw, max_age, self.clock())

    async def read_many(
        self, keys: Sequence[str], max_age: float | None = None
    ) -> list[CacheEntry | None]:
        if not keys:
            return []
        try:
            raws = await self.backend.get_many(keys)
        except BackendError as exc:
            self._fault(exc, "get_many")
            return [None] * len(keys)
        if self._failing:
            self._recovered()
        now = self.clock()
        return [self._usable(raw, max_age, now) for raw in raws]

    def make_entry(self, body: bytes, ttl: float | None, meta: dict[str, Any]) -> CacheEntry:
        now = self.clock()
        return CacheEntry(body=body, created_at=now, expires_at=expiry_time(now, ttl), meta=meta)

    async def write(self, key: str, entry: CacheEntry) -> bool:
        """Store ``entry``; False (and counted) if the store failed."""
        ttl = entry.ttl_left(self.clock())
        try:
            await self.backend.set(key, encode_entry(entry), ttl)
        except BackendError as exc:
            self._fault(exc, "set")
            return False
        if self._failing:
            self._recovered()
        self.stats.stores += 1
        return True

    async def write_many(self, items: Sequence[tuple[str, CacheEntry]]) -> None:
        for key, entry in items:
            await self.write(key, entry)

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
                self._fault(exc, "start-up check")

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> AsyncCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the whole flow for a request whose answer is one body ----------------------

    async def get_or_produce(self, key: str, plan: CachePlan, produce: Producer,
                             fallback: Fallback | None = None) -> Answer:
        """Serve from cache, or join an identical in-flight request, or produce and store.

        ``fallback`` (the semantic lookup) runs only after an exact miss, never on an exact hit.
        """
        if not plan.uses_cache:
            self.stats.bypasses += 1
            outcome = await produce()
            return Answer(outcome.status, outcome.body, "bypass")
        if plan.read:
            mark = self.flights.mark()
            entry = await self.read(key, plan.max_age)
            if entry is not None:
                self.stats.hits += 1
                return Answer(200, entry.body, "hit", entry)
            if fallback is not None:
                entry = await fallback()
                if entry is not None:
                    self.stats.hits += 1
                    return Answer(200, entry.body, "hit", entry)
            flight = self.flights.current(key)
            if flight is not None:
                shared = await self.flights.follow(flight)
                if shared is not None:
                    self.stats.coalesced += 1
                    self.stats.misses += 1
                    return Answer(shared.status, shared.body, "miss")
            if (entry := await self.stored_meanwhile(key, plan, mark)) is not None:
                self.stats.hits += 1
                return Answer(200, entry.body, "hit", entry)
            self.stats.misses += 1
            with self.flights.lead(key) as leading:
                async with self.peer_flight(key, plan) as stored:
                    if stored is not None:
                        self.stats.coalesced += 1
                        outcome = Outcome(200, stored.body)
                    else:
                        outcome = await self.produce_and_store(key, plan, produce)
                leading.resolve(outcome)
            return Answer(outcome.status, outcome.body, "miss")
        self.stats.bypasses += 1
        outcome = await self.produce_and_store(key, plan, produce)
        return Answer(outcome.status, outcome.body, "bypass")

    async def stored_meanwhile(self, key: str, plan: CachePlan, mark: int) -> CacheEntry | None:
        """Re-read ``key`` only if a flight for it ended since ``mark`` (see :mod:`reprise.coalesce`).

        Closes the window where our first read went out before that leader's write landed
        and came back "absent" after the leader had left: without it, a second upstream call.
        """
        if not self.flights.ended_since(key, mark):
            return None
        return await self.read(key, plan.max_age)

    async def produce_and_store(self, key: str, plan: CachePlan, produce: Producer) -> Outcome:
        self.stats.upstream_calls += 1
        outcome = await produce()
        if outcome.ok and plan.store:
            await self.write(key, self.make_entry(outcome.body, plan.ttl, outcome.meta))
        return outcome

    # -- single-flight across processes (DistributedLock) ---------------------------

    @asynccontextmanager
    async def peer_flight(self, key: str, plan: CachePlan) -> AsyncIterator[CacheEntry | None]:
        """For the in-process leader of a miss: yield an entry another process stored
        while we waited (serve it), or None (produce and store it, then the lock is freed).

        Without a lock, or for an answer that will not be stored, yields None at once.
        A failing store never blocks: the fault is counted and the caller produces.
        """
        lock = self.lock
        if lock is None or not plan.store:
            yield None
            return
        held = await self._acquire(lock, key)
        stored = None
        if not held:
            stored, held = await self._await_peer(lock, key, plan.max_age)
        try:
            yield stored
        finally:
            if held:
                try:
                    await lock.release(key)
                except BackendError as exc:
                    self._fault(exc, "release")

    async def _acquire(self, lock: DistributedLock, key: str) -> bool:
        """True if this process may produce: lock won, or the store is failing."""
        try:
            return await lock.acquire(key, lock.lock_timeout)
        except BackendError as exc:
            self._fault(exc, "lock")
            return True

    async def _await_peer(
        self, lock: DistributedLock, key: str, max_age: float | None
    ) -> tuple[CacheEntry | None, bool]:
        """Poll for the holder's answer: (entry, False), or (None, held) once we should produce."""
        deadline = time.monotonic() + lock.lock_timeout
        delay = 0.01
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            entry = await self.read(key, max_age)
            if entry is not None:
                return entry, False
            if await self._acquire(lock, key):  # freed without an answer: our turn
                return None, True
        return None, False

    # -- the library's entry point ---------------------------------------------------

    async def chat(self, request: dict[str, Any], call: ChatCall) -> CacheResult:
        """Answer a chat-completion ``request`` from the cache, or by awaiting ``call(request)``.

        ``call`` gets the request without its ``cache`` controls and returns the
        response as a dict (or an object with ``model_dump()``, as the OpenAI SDK
        returns). An exception from ``call`` propagates and nothing is stored.
        """
        require_object(request)
        require_model(request)
        validate_chat(request)
        plan = decide(self.policy, parse_controls(request.get("cache")))
        key = storage_key(chat_key_hash(request), plan.namespace)
        upstream_request = {k: v for k, v in request.items() if k != "cache"}

        async def produce() -> Outcome:
            response = await call(upstream_request)
            if hasattr(response, "model_dump"):
                response = response.model_dump(mode="json", exclude_unset=True)
            meta = {"kind": "chat", "model": request.get("model"), "usage": response.get("usage")}
            return Outcome(200, orjson.dumps(response), meta)

        answer = await self.get_or_produce(key, plan, produce)
        age = answer.entry.age(self.clock()) if answer.entry is not None else 0.0
        return CacheResult(
            orjson.loads(answer.body), answer.cache_status, key if plan.uses_cache else None, age
        )
