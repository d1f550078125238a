"""Single-flight: identical requests that miss together share one upstream call.

The first request for a key becomes the *leader* and registers a future; requests
for the same key that arrive before it finishes *follow* by awaiting that future
(shielded, so a follower that disconnects does not cancel the leader). The leader
stores the answer *before* resolving, so a request arriving afterwards finds it in
the cache. One window remains with a networked store: a read sent just before the
leader's write lands answers "absent" only after the leader has left. A request
notes :meth:`SingleFlight.mark` before its read and asks :meth:`SingleFlight.ended_since`
before leading; if a flight for its key ended meanwhile, it reads once more instead of
calling upstream. A leader that fails resolves with ``None`` and its followers call
upstream themselves.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Flight(Generic[T]):
    key: str
    future: asyncio.Future[T | None]

    def resolve(self, outcome: T | None) -> None:
        if not self.future.done():
            self.future.set_result(outcome)


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

    @contextmanager
    def lead(self, key: str) -> Iterator[Flight[T]]:
        """Register as leader; on any exit the flight is removed and resolved (None if unset)."""
        flight: Flight[T] = Flight(key, asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        try:
            yield flight
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.resolve(None)
            self._generation += 1
            self._ended[key] = self._generation
            self._ended.move_to_end(key)
            if len(self._ended) > self._remembered:
                self._ended.popitem(last=False)

    @staticmethod
    async def follow(flight: Flight[T]) -> T | None:
        return await asyncio.shield(flight.future)
