"""What the driver (:mod:`reprise.cache`) hands back: an answer and how it was obtained.

One type per kind of request (a single answer, a stream, a batch of items) and the library's
:class:`CacheResult`; handlers translate these into HTTP, the library returns the last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reprise.core.entry import CacheEntry
from reprise.outcome import Outcome
from reprise.stream_lead import StreamLead


@dataclass(frozen=True, slots=True)
class CacheResult:
    """The library's answer: the response dict and what the cache did for it."""

    response: dict[str, Any]
    status: str  # "hit" | "miss" | "bypass"
    key: str | None
    age: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """A single answer and how it was obtained (``entry`` is set on a hit)."""

    status: int
    body: bytes | memoryview
    """On a hit, the stored bytes themselves (``CacheEntry.body``): sent as they are."""
    cache_status: str  # "hit" | "miss" | "bypass"
    entry: CacheEntry | None = None
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    """The provider's headers of a fresh call (``Outcome.headers``); empty on a hit."""


@dataclass(frozen=True, slots=True)
class StreamAnswer:
    """A streamed request's answer: a stored ``entry``, a ``shared`` outcome, or the ``lead``."""

    cache_status: str
    entry: CacheEntry | None = None
    shared: Outcome | None = None
    lead: StreamLead | None = None


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    """A batch's items in request order, or the provider's ``failure`` (status and body)."""

    cache_status: str
    values: list[bytes] = field(default_factory=list)
    from_cache: list[bool] = field(default_factory=list)
    usage: bytes | None = None
    failure: Outcome | None = None

    @property
    def hits(self) -> int:
        return sum(self.from_cache)
