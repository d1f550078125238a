"""What producing an answer gave: values the driver shares with followers and stores.

A provider's error status is an :class:`Outcome` too (returned, not raised): the client
sees the provider's own error, followers get the same, and only 2xx outcomes are stored.
A provider that could not be reached raises :class:`~reprise.errors.UpstreamError`,
which the driver also shares as a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reprise.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class Outcome:
    """A produced answer: upstream status and body, and the entry metadata if it is stored."""

    status: int
    body: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """The provider's own headers for this call (rate limits, request id): sent with a
    fresh answer, never stored."""
    storable: bool = True
    """False for a 2xx answer that is not final (a Responses API ``incomplete`` or queued
    response): sent and shared with followers, never stored."""
    stored: bool = False
    """The request that produced it stored it. One that did not (its ``no-store``) still
    shares it: a follower whose own plan stores then stores it itself."""
    recording: bytes = b""
    """A chat stream's own events beside its merged ``body``, when the merge lost per-chunk
    values (:mod:`reprise.core.chunk_record`): stored with it, sent to streamed followers."""
    too_long: bool = False
    """A stream forwarded whole to the request that led it, but past the recording bound
    (:data:`~reprise.core.answer_bounds.MAX_RECORDED_BYTES`): nothing was kept to share, so the
    requests that waited for it produce their own answer instead."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """A provider's answer for several items: one value per item asked, or its error."""

    status: int
    body: bytes = b""
    values: tuple[bytes, ...] = ()
    usage: bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    storable: bool = True
    """False for a valid answer that is sent and shared but not stored (as :attr:`Outcome.storable`)."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


#: What a flight shares with its followers.
Shared = Outcome | UpstreamError


def reraise(failure: UpstreamError) -> UpstreamError:
    """A fresh copy of a shared failure, so each follower raises its own exception.

    The copy is raised from the shared failure (its ``__cause__``), so what a follower
    catches still leads to what the provider call raised (the library re-raises that).
    """
    fresh = UpstreamError(str(failure), failure.status, failure.code)
    fresh.__cause__ = failure
    return fresh
