"""Uvicorn's httptools protocol, bounded: what one client connection may hold, and for how long.

Uvicorn's :class:`HttpToolsProtocol` reads a request head of any size, waits for it and
for the body forever, and accepts every connection the OS hands it: a 16 MB header was
read without a key, and a thousand half-sent requests used up ``ulimit -n``. This
subclass answers those clients itself, before the app sees a request:

- a head over ``max_header_bytes`` or with more than ``max_headers`` fields: 431, close;
- a head not received within ``request_head_timeout`` (from connect, or from its first
  byte on a kept-alive connection): 408, close (a connection that sent nothing is closed);
- a body not received within ``request_body_timeout`` once its head is in: 408, close,
  and the app reading it sees the client as gone;
- an answer given before the body was read (a 401, a 413): the rest is not waited for;
- more than :data:`MAX_PIPELINED` requests pipelined behind the one being answered: the
  connection is closed (found from outside: one 256 KiB write of 9,362 tiny requests became
  9,362 queued request cycles, ~22 MB per connection without a key), and reading pauses
  while any request waits, so one read is all a connection can have parsed ahead;
- an answer waiting to be sent to a client that reads none of it for ``send_timeout``
  (nginx's ``send_timeout``): the connection is aborted, its buffer freed; a slow reader
  that makes progress is never cut off;
- more than ``max_unsent_bytes`` of answers waiting in the send buffers of stalled
  connections (clients not reading): the one stalled longest is aborted, so clients that
  ask for large answers and never read cannot make the process grow without bound;
- more than ``max_connections`` open: the new connection closes the one idle longest
  (kept-alive between requests, or still sending its head: all a slow client can hold
  without a key), as nginx reuses idle connections, then the one stalled longest on a
  client that does not read; if every connection is busy, the new one is answered 503
  ``too_many_connections``.

A connection closed (to make room, or by a timeout) while part of its answer is unsent is
aborted, not closed: a close waits for the client to read, and held its socket past
``max_connections`` until the process ran out of file descriptors.

Every refusal is OpenAI error JSON with ``connection: close``, then a lingering close
(half-close, discard input for a moment) so the client reads the answer instead of a
reset. The hit path gains no task and no timer: a deadline is armed only when a read
ends with a head or body still incomplete (and once per connection, at connect).

Built on uvicorn's internals (checked against uvicorn 0.55 and httptools 0.9):
``data_received`` is uvicorn's own, with the head accounting added.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import sys
import termios
import urllib.parse
from typing import Any, Final, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from reprise.server.connection_bounds import ConnectionLimits, ConnectionTable, default_max_connections
from reprise.server.one_write import OneWriteCycle
from reprise.server.refusals import (
    EVICTED,
    MALFORMED,
    MAX_PIPELINED,
    REFUSED,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_PIPELINED,
    Refusal,
    head_too_large,
    timed_out,
)

__all__ = ["MAX_PIPELINED", "REFUSED", "BoundedHttpToolsProtocol", "ConnectionLimits",
           "default_max_connections", "protocol_class"]

#: Where the parser is in the current request.
_IDLE: Final = 0  # between requests (or none yet); a request may be with the app
_HEAD: Final = 1  # request line and headers arriving
_BODY: Final = 2  # head in, body arriving

_OWN_CYCLE: Final = hasattr(HttpToolsProtocol, "_start_asgi_task")
"""This uvicorn has the method :meth:`BoundedHttpToolsProtocol._start_cycle` relies on (0.55 does)."""

_OUTQ: Final = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
"""The ioctl that reads a socket's unsent bytes on Linux (``SIOCOUTQ``); elsewhere only the
transport's own buffer is watched."""

#: Seconds a refused connection is drained (input discarded) before it is closed.
LINGER_SECONDS: Final = 2.0


def protocol_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """What to pass as uvicorn's ``http=``: picklable, so ``--workers N`` get it too."""
    factory = functools.partial(BoundedHttpToolsProtocol, limits=limits, table=ConnectionTable())
    return cast("type[asyncio.Protocol]", factory)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with the bounds of :class:`ConnectionLimits`; one per connection."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits,
        table: ConnectionTable,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.table = table
        self._phase: int = _IDLE
        self._head_bytes = 0  # bytes read while a head was incomplete: an upper bound of its size
        self._head_mid_read = False  # a head began inside the read that ended the previous request
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False  # answered by us (or closed): input is discarded
        self._send_deadline: asyncio.TimerHandle | None = None  # armed while writes are paused

    # -- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        while len(self.connections) > self.limits.max_connections:
            victim = self.table.oldest()
            if victim is None:
                busy = len(self.connections) - 1
                self.logger.warning("refused a connection (503): all %d connections are busy", busy)
                self._refuse(TOO_MANY_CONNECTIONS)
                return
            victim._drop()
        self.table.idle[self] = None
        self._arm(self.limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        self._cancel_send_deadline()
        self.table.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already: what the client still sends is discarded
        self._unset_keepalive_if_required()
        self._head_mid_read = False
        if self._phase != _BODY:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_failed(exc)
            return
        except httptools.HttpParserUpgrade:  # as uvicorn does; ``serve`` runs with ws="none"
            if self._should_upgrade():
                self.table.forget(self)  # the transport goes to another protocol
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase != _IDLE:
            self._bound_incomplete()

    def _bound_incomplete(self) -> None:
        """This read left a head or a body incomplete: bound it, and give it a deadline."""
        limits = self.limits
        if self._phase == _BODY:
            if self._deadline is None:
                self._arm(limits.body_timeout)
        elif self._head_bytes > limits.max_header_bytes:
            self._refuse(head_too_large(f"request head exceeds {limits.max_header_bytes} bytes"))
        elif len(self.headers) > limits.max_headers:
            self._refuse(head_too_large(f"request has more than {limits.max_headers} header fields"))
        elif self._deadline is None:
            self._arm(limits.head_timeout)

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc.__context__, Refusal):  # raised by our own parser callback
            self._refuse(exc.__context__)
        else:
            self._bad_request()

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers a request it cannot parse in plain text; every other error of the
        gateway is OpenAI's error JSON, so this one is too (counted like the other refusals)."""
        self._refuse(MALFORMED)

    # -- parser callbacks ------------------------------------------------------------
    # The parent is called directly: super() costs about 0.3 us a call on CPython 3.11,
    # four calls a request (uvicorn's protocol alone takes ~25 us a request).

    def on_message_begin(self) -> None:
        self._phase = _HEAD
        HttpToolsProtocol.on_message_begin(self)

    def on_headers_complete(self) -> None:
        if self._deadline is not None:
            self._cancel_deadline()
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise head_too_large(f"request has more than {limits.max_headers} header fields")
        # Exact size only when the cheap bound says it may be too large (a body in the same read).
        if (self._head_bytes > limits.max_header_bytes or self._head_mid_read) and (
            len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            > limits.max_header_bytes
        ):
            raise head_too_large(f"request head exceeds {limits.max_header_bytes} bytes")
        if len(self.pipeline) >= MAX_PIPELINED and not self.cycle.response_complete:
            raise TOO_MANY_PIPELINED
        self._phase = _BODY
        self._head_bytes = 0
        self.table.idle.pop(self, None)  # busy until its answer is sent
        if self.limit_concurrency is None and _OWN_CYCLE:
            self._start_cycle()
            return
        HttpToolsProtocol.on_headers_complete(self)
        # The cycle uvicorn just made answers with one write (one_write.py). Its task has not
        # run yet, so it only ever sees the subclass; the class adds no state to the instance.
        self.cycle.__class__ = OneWriteCycle

    def _start_cycle(self) -> None:
        """uvicorn's ``on_headers_complete`` (0.55) without ``limit_concurrency`` (``serve`` sets
        none), making the :class:`OneWriteCycle` itself.

        Made as uvicorn's cycle and then given the subclass (the fallback above), every
        attribute read of the cycle missed CPython's specialised paths (the instance's layout
        belongs to the other class): about 4% of a cache hit's instructions (callgrind).
        """
        parser = self.parser
        scope = self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed_url.query or b""
        existing_cycle = self.cycle
        self.cycle = cycle = OneWriteCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing_cycle is None or existing_cycle.response_complete:
            self._start_asgi_task(cycle, self.app)
        else:  # pipelined: queued until the answer before it is complete
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._head_mid_read = True
        if self._deadline is not None:
            self._cancel_deadline()
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        if self._phase == _BODY and self.cycle.response_complete and not self.transport.is_closing():
            # Answered before its body was read (401, 413): do not wait for the rest of it.
            self.server_state.total_requests += 1
            self._linger()
            return
        if not self.pipeline:
            self.table.idle[self] = None  # idle from now (or sending its next head)
        HttpToolsProtocol.on_response_complete(self)
        if self.pipeline:  # uvicorn resumed reading; more waits to be answered: read nothing more yet
            self.flow.pause_reading()

    # -- answers the client does not read ---------------------------------------------
    # The transport calls these when its buffer crosses its high / low water marks (64 / 16 KiB
    # by default): nothing runs on the hit path, whose answer fits in the socket's own buffer.

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        self.table.stalled[self] = None
        self._arm_send(self._unsent())
        if self.table.unsent_bytes() > self.limits.max_unsent_bytes:
            # Not from inside the transport's write that called us: on the next loop turn.
            self.loop.call_soon(self._shed_unsent)

    def resume_writing(self) -> None:
        self.table.stalled.pop(self, None)
        self._cancel_send_deadline()
        self.flow.resume_writing()

    def _arm_send(self, unsent: int) -> None:
        self._cancel_send_deadline()
        self._send_deadline = self.loop.call_later(self.limits.send_timeout, self._send_expired, unsent)

    def _cancel_send_deadline(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _unsent(self) -> int:
        """Bytes not yet taken by the client: the transport's buffer and the kernel's send queue.

        The kernel queue is counted because it moves first: a client reading slowly drains a
        socket buffer of up to 4 MB long before the transport's own buffer shrinks.
        """
        unsent = self.transport.get_write_buffer_size()
        if _OUTQ is not None:
            sock = self.transport.get_extra_info("socket")
            try:
                queued = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
            except (OSError, AttributeError, ValueError):
                return unsent
            unsent += int.from_bytes(queued, sys.byteorder, signed=True)
        return unsent

    def _send_expired(self, unsent_before: int) -> None:
        """No byte taken for ``send_timeout``: abort. Some taken (less waiting than before): wait again."""
        self._send_deadline = None
        if not self.transport.get_write_buffer_size():
            return
        unsent = self._unsent()
        if unsent < unsent_before:
            self._arm_send(unsent)
            return
        self.logger.warning("aborted a connection: its client read none of %d unsent bytes in %g s",
                            unsent, self.limits.send_timeout)
        self._abort("response_send_timeout")

    def _shed_unsent(self) -> None:
        """Abort the connections stalled longest until what waits for non-readers is within budget."""
        table, budget = self.table, self.limits.max_unsent_bytes
        while table.stalled and table.unsent_bytes() > budget:
            victim = next(iter(table.stalled))
            self.logger.warning("aborted a connection stalled on %d unsent bytes: over max_unsent_response_mb",
                                victim.transport.get_write_buffer_size())
            victim._abort("max_unsent_response")

    def _abort(self, code: str) -> None:
        """Drop the connection and what it has not sent (``close`` would wait for the client to read)."""
        REFUSED[code] += 1
        self.connections.discard(self)
        self.table.forget(self)
        self._cancel_deadline()
        self._abort_transport()

    def _abort_transport(self) -> None:
        """``transport.abort()``, and the app told at once (``connection_lost`` comes a loop turn
        later, and a write to the aborted transport in between raises)."""
        self._cancel_send_deadline()
        self._refused = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.abort()
        self.flow.resume_writing()  # an app waiting to write returns (and sees the client gone)

    # -- deadlines and refusals ------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.call_later(delay, self._expire)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            self.transport.close()
        elif self.flow.read_paused:  # we stopped reading (app busy, pipelined request): not the client's delay
            self._arm(self.limits.body_timeout if self._phase == _BODY else self.limits.head_timeout)
        elif self._phase == _HEAD:
            self._refuse(timed_out("head", self.limits.head_timeout))
        elif self._phase == _BODY:
            self._refuse(timed_out("body", self.limits.body_timeout))
        else:  # connected and never sent a byte
            self._refused = True
            self.transport.close()

    def _refuse(self, refusal: Refusal) -> None:
        """Answer ``refusal`` unless another answer is under way, then close gently."""
        REFUSED[refusal.code] += 1
        self._refused = True
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        cycle = self.cycle
        if self.pipeline:  # an earlier request is being answered: nothing can be said in between
            self.transport.close()
            return
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started or self._phase != _BODY:
                self.transport.close()  # mid-answer (or a pipelined request waits): nothing can be said
                return
            cycle.disconnected = True  # the app waiting for this body sees the client gone
            cycle.message_event.set()
        self.transport.write(refusal.render(self.server_state.default_headers))
        self._linger()

    def _linger(self) -> None:
        """Half-close and discard input for a moment: closing with unread input would reset the answer away."""
        self._refused = True
        self._cancel_deadline()
        self.table.idle.pop(self, None)
        self.table.refused[self] = None
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # after what is buffered; the client's EOF then closes us
            self._arm(LINGER_SECONDS)
        else:
            self.transport.close()

    def _drop(self) -> None:
        """Closed to make room: a partial head is told why; an idle connection just closes."""
        self.connections.discard(self)
        self.table.forget(self)
        self._cancel_deadline()
        cycle = self.cycle
        if self.transport.get_write_buffer_size():  # the client is not reading: close would wait for it
            self._abort_transport()
            return
        if self._phase == _HEAD and not self._refused and (cycle is None or cycle.response_complete):
            self.transport.write(EVICTED.render(self.server_state.default_headers))
        self._refused = True
        self.transport.close()
