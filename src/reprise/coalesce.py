"""Single-flight: identical requests that miss together share one production and its result.

The first request for a key *starts* a flight; requests for the same key that arrive
before it finishes *follow* it by awaiting its result (shielded, so a follower that
disconnects cancels nothing). The flight belongs to the production, not to the request
that started it: the driver ends it from the production task, so a leader whose client
hangs up does not end it while others wait.

A flight ends with a result, which every follower gets: the answer, or the failure
(a provider error status, a timeout, a refused connection), so N identical concurrent
misses cost one upstream call also when that call fails. It ends with ``None`` only when
it produced nothing to share (aborted with nobody waiting, or a bug): followers then
start again, one of them leading.

The leader stores the answer *before* ending the flight, so a request arriving afterwards
finds it in the cache. One window remains with a networked store: a read sent just before
the leader's write lands answers "absent" only after the leader has left. A request notes
:meth:`SingleFlight.mark` before its read and asks :meth:`SingleFlight.ended_since` before
leading; if a flight for its key ended meanwhile, it reads once more instead of calling
upstream.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Flight(Generic[T]):
    """One production in progress; ``followers`` counts the requests waiting on it."""

    key: str
    future: asyncio.Future[T | None]
    followers: int = field(default=0)


class SingleFlight(Generic[T]):
    """In-process registry of in-flight keys (one per event loop / worker)."""

    def __init__(self, remembered: int = 4096) -> None:
        self._flights: dict[str, Flight[T]] = {}
        self._ended: OrderedDict[str, int] = OrderedDict()  # key -> generation its last flight ended in
        self._generation = 0
        self._remembered = remembered  # only reads in progress need it: a few ms of ends

    def mark(self) -> int:
        """A point in time to pass to :meth:`ended_since` (take it before reading the cache)."""
        return self._generation

    def ended_since(self, key: str, mark: int) -> bool:
        """Whether a flight for ``key`` ended after ``mark``: its answer may be stored by now."""
        return self._ended.get(key, -1) > mark

    def __len__(self) -> int:
        return len(self._flights)

    def current(self, key: str) -> Flight[T] | None:
        return self._flights.get(key)

    def start(self, key: str) -> Flight[T]:
        """Register a flight for ``key``; the producer must :meth:`finish` it, whatever happens."""
        flight: Flight[T] = Flight(key, asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        return flight

    def finish(self, flight: Flight[T], result: T | None) -> None:
        """End ``flight``: followers get ``result`` (``None``: nothing to share, start again)."""
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]
        if not flight.future.done():
            flight.future.set_result(result)
        self._generation += 1
        self._ended[flight.key] = self._generation
        self._ended.move_to_end(flight.key)
        if len(self._ended) > self._remembered:
            self._ended.popitem(last=False)

    @staticmethod
    async def follow(flight: Flight[T]) -> T | None:
        """Wait for ``flight``'s result; cancelling this wait never cancels the flight."""
        flight.followers += 1
        try:
            return await asyncio.shield(flight.future)
        finally:
            flight.followers -= 1
