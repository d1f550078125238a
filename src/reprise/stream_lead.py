"""The hand-off between the driver producing a streamed answer and the handler forwarding it.

The driver reads the provider's stream in its own task (so the answer is still stored
and shared when the leader's client hangs up while others wait for it) and puts what
the client should see into a :class:`StreamLead`; the handler only iterates it. The
lead says first how the answer opens (:meth:`StreamLead.opened`), then yields the SSE
events to send, and says at the end whether the stream broke (:attr:`StreamLead.failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from reprise.errors import UpstreamError
from reprise.outcome import Outcome


@dataclass(slots=True)
class StreamReply:
    """An opened upstream stream: an error (status, body) or a byte iterator."""

    status: int
    error_body: bytes
    chunks: AsyncIterator[bytes]
    headers: tuple[tuple[bytes, bytes], ...] = ()
    """The provider's own headers (rate limits, request id): sent on, never stored."""
    storable: Callable[[], bool] = lambda: True
    """Asked once the stream ended whole: False when the upstream's own translation lost part of
    the provider's answer (an ``anthropic/`` block it has no place for). The answer is then sent
    and shared with the requests waiting for it, never stored: a hit is the provider's answer."""


class Assembler(Protocol):
    """Reads a provider's stream for the driver: the events to forward, and the answer to store.

    :class:`~reprise.core.streaming.StreamAssembler` (chat: stored as the plain answer) and
    the raw recorders of :mod:`reprise.core.sse_record` (stored as the events themselves).
    """

    @property
    def done(self) -> bool:
        """The stream's last event arrived: from it on, events are held until the answer is stored."""
        ...

    @property
    def complete(self) -> bool:
        """What arrived is a complete, valid answer: safe to store."""
        ...

    @property
    def overflow(self) -> bool:
        """More arrived than the recording bound: forwarded to the leader, neither stored nor shared."""
        ...

    def feed(self, data: bytes) -> list[bytes]:
        """Add raw bytes; return the whole events to forward."""
        ...

    def completion(self) -> dict[str, Any]:
        """The answer as an object (described in the entry's metadata)."""
        ...

    def stored_body(self, completion: dict[str, Any]) -> bytes:
        """The entry's body for this complete answer."""
        ...

    def recording(self) -> bytes:
        """What the entry keeps beside its body for streamed hits (a chat stream's events when
        its merge lost per-chunk values, :mod:`reprise.core.chunk_record`); empty for none."""
        ...

    def unstored_body(self) -> bytes | None:
        """When the stream ended normally with a whole answer that must not be stored (a
        Responses stream ending with ``response.incomplete``): what the requests waiting for
        it are sent. None when there is nothing whole to send them (they get the failure)."""
        ...


@dataclass(frozen=True, slots=True)
class StreamSource:
    """How to produce one streamed answer: open the provider's stream, reassemble it, describe it.

    ``describe`` turns the reassembled completion into the entry's admin metadata.
    ``storable`` False: the answer this stream makes must never be stored, by its own request
    or by one that waited for it (a chat stream asked with ``include_usage: false`` has no
    usage for plain hits), as distinct from a leader's own ``no-store``, whose followers may.
    """

    open: Callable[[], AbstractAsyncContextManager[StreamReply]]
    assembler: Assembler
    describe: Callable[[dict[str, Any]], dict[str, Any]]
    storable: bool = True


class _Open:
    """Marker: the provider answered 2xx and its events follow."""


class _End:
    """Marker: no more events."""


OPEN = _Open()
END = _End()
Item = _Open | _End | bytes | Outcome | Exception

BACKLOG_LIMIT = 8 * 2**20
"""Bytes of a led stream queued for a client that reads more slowly than the provider sends:
past it the driver stops reading the provider until the client has taken some
(:meth:`StreamLead.keep_pace`). Without it a client that stopped reading made the gateway
hold the provider's whole stream, however long (the 32 MiB recording bound is not about
forwarding)."""

SHARED_STALL_BUDGET = 2.0
"""Seconds in all that one client's backlog may hold the provider back while other requests wait
for the same answer (in this process, or on its peer lock in another)."""

FOLLOWER_CHECK = 0.25
"""Seconds between two looks, while the driver waits for a slow client, for requests joining it."""

STALL_BUDGET = 15.0
"""Seconds in all that one client's backlog may hold the provider's stream back. Past them
the client is cut off (:attr:`StreamLead.too_slow`): what it did not take is freed, it gets
an error event (code ``client_too_slow``) when it reads again, and the driver reads on for
the requests waiting for the same answer, so one slow client cannot stall them for longer."""

log = logging.getLogger("reprise.stream")


@dataclass(eq=False)
class StreamLead:
    """What the leading request's handler reads while the driver produces the stream."""

    failure: UpstreamError | None = None
    """Set when the provider's stream broke after it opened (the client gets an error event)."""
    gone: bool = False
    """The client went away (:meth:`detach`): send nothing more."""
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    """The provider's headers of the stream being forwarded, set before it is opened."""
    too_slow: bool = False
    """The client fell :data:`BACKLOG_LIMIT` behind the provider and was cut off (also ``gone``)."""
    _queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    _detach: Callable[[], None] | None = None
    _ending: list[Item] = field(default_factory=list)
    _backlog: int = 0
    """Bytes queued and not yet taken by the handler."""
    _room: asyncio.Event | None = None
    """Set when the backlog is back within bounds (or the client left), while the driver waits for it."""
    _stalled: float = 0.0
    """Seconds the driver has waited for this client so far."""
    lone_budget: float = STALL_BUDGET
    """The stall budget while nobody is seen waiting (behind a peer lock, under its ``lock_timeout``)."""
    _others_wait: Callable[[], Awaitable[bool]] | None = None
    """Whether other requests wait for this answer (its flight has followers, or peers wait on its lock)."""

    async def opened(self) -> Outcome | None:
        """None when the provider's events follow; else the whole answer to send instead.

        The answer instead is the provider's error (non-2xx status and body) or an answer
        another gateway instance stored while this one waited for its lock. A failure to
        reach the provider raises :class:`UpstreamError`; an unexpected failure of the
        gateway raises as it is (the server's edge answers 500).
        """
        item = await self._queue.get()
        if self.gone:
            return None
        if isinstance(item, Exception):
            raise item
        if isinstance(item, Outcome):
            return item
        return None

    async def events(self) -> AsyncIterator[bytes]:
        """The SSE events to forward, in order, until the stream ends (or breaks)."""
        while not self.gone:
            item = await self._queue.get()
            if self.gone:
                return
            if isinstance(item, bytes):
                self._backlog -= len(item)
                if self._room is not None and self._backlog <= BACKLOG_LIMIT:
                    self._room.set()
                yield item
            elif isinstance(item, Exception):
                self.failure = item if isinstance(item, UpstreamError) else UpstreamError("internal error", 500)
                return
            else:
                return

    def detach(self) -> None:
        """The client went away: stop producing unless other requests wait for this answer.

        Whatever the handler awaits on this lead returns at once."""
        if self.gone:
            return
        self.gone = True
        self._queue.put_nowait(END)
        if self._room is not None:
            self._room.set()  # the driver need not wait for a client that left
        if self._detach is not None:
            self._detach()

    # -- the driver's side -------------------------------------------------------------

    def put(self, item: Item) -> None:
        if isinstance(item, bytes):
            if self.gone:
                return  # nobody will take it
            self._backlog += len(item)
        self._queue.put_nowait(item)

    async def keep_pace(self) -> None:
        """After :meth:`put`: wait while the client is more than :data:`BACKLOG_LIMIT` behind,
        for at most what is left of :attr:`lone_budget` (:data:`STALL_BUDGET`, less behind a peer
        lock); then cut it off and go on.

        For at most :data:`SHARED_STALL_BUDGET` while other requests wait for the same answer
        (found from outside: a leader that never read held identical requests for 15 s, and past
        the provider's read timeout turned them into 504s): one client's pace is its own. With a
        peer lock (Redis, ``--workers``) the waiters on other processes are asked of the store. A
        client that reads, however far behind a burst, takes the backlog under the bound in far
        less (cutting it off at once cut off clients reading a 33 MiB burst at full speed).
        """
        if self._backlog <= BACKLOG_LIMIT or self.gone:
            return
        room = self._room = asyncio.Event()
        started = time.monotonic()
        try:
            while not room.is_set():
                shared = self._others_wait is not None and await self._others_wait()
                budget = SHARED_STALL_BUDGET if shared else self.lone_budget
                left = budget - self._stalled - (time.monotonic() - started)
                if left <= 0:
                    self._cut_off()
                    return
                with contextlib.suppress(TimeoutError):  # look again for followers now and then
                    await asyncio.wait_for(room.wait(), min(left, FOLLOWER_CHECK))
        finally:
            self._stalled += time.monotonic() - started
            self._room = None

    def _cut_off(self) -> None:
        """The client kept the provider waiting too long: free what it did not take, stop as if it had left."""
        log.warning("a streaming client stayed %d MiB behind the provider for %g s (%g s while other requests "
                    "may wait for the same answer): cut off (client_too_slow)", BACKLOG_LIMIT >> 20, self.lone_budget,
                    SHARED_STALL_BUDGET)
        self.too_slow = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._backlog = 0
        self.detach()

    def finish_with(self, last: bytes | Outcome | Exception) -> None:
        """Hold the stream's last events (or the answer instead of it, or its failure) until
        :meth:`release_end`."""
        self._ending = [last, END] if isinstance(last, bytes) else [last]

    def release_end(self) -> None:
        """Send what :meth:`finish_with` held (the driver calls it once its flight has ended)."""
        for item in self._ending:
            self._queue.put_nowait(item)
        self._ending = []
