"""Single-flight: identical requests that miss together share one upstream call.

The first request for a key becomes the *leader* and registers a future; requests
for the same key that arrive before it finishes *follow* by awaiting that future
(shielded, so a follower that disconnects does not cancel the leader). The leader
stores the answer *before* resolving, so a request arriving afterwards finds it in
the cache: there is no window in which neither the flight nor the entry exists.
A leader that fails resolves with ``None`` and its followers call upstream themselves.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self) -> None:
        self._flights: dict[str, Flight[T]] = {}

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

    @staticmethod
    async def follow(flight: Flight[T]) -> T | None:
        return await asyncio.shield(flight.future)
