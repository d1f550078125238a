"""Sending a led stream to its client: one loop for every streamed route.

The driver hands a streaming handler the lead of a provider call; the handler forwards its
events as they pass, answers with a whole outcome instead when the driver has one (the
provider's error, or an answer another instance stored), and ends a broken stream with an
error event the SDKs raise. Only that "instead" and the error event's framing differ between
routes, so they are parameters here rather than copies of the loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from reprise.outcome import Outcome
from reprise.server.errors import error_body
from reprise.server.http import SSE_HEADERS, Receive, Send, watch_disconnect
from reprise.stream_lead import BACKLOG_LIMIT, SHARED_STALL_BUDGET, StreamLead


async def forward_lead(send: Send, receive: Receive, lead: StreamLead, headers: list[tuple[bytes, bytes]],
                       send_instead: Callable[[Outcome], Awaitable[None]], error_event: bytes = b"") -> None:
    """Send the provider's events as the driver passes them on; stop at once if the client left.

    ``error_event`` is the ``event:`` line put before a broken stream's error data (the
    Responses API names its events; chat and completions do not)."""
    watcher = watch_disconnect(receive)
    watcher.add_done_callback(lambda task: None if task.cancelled() else lead.detach())
    try:
        instead = await lead.opened()
        if lead.gone:
            return
        if instead is not None:
            await send_instead(instead)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*SSE_HEADERS, *headers, *lead.upstream_headers]})
        async for events in lead.events():
            await send({"type": "http.response.body", "body": events, "more_body": True})
        tail = b""
        if lead.too_slow:  # the client stopped keeping up: told why, if it reads on
            message = error_body(f"this stream was cut off: the client stayed more than {BACKLOG_LIMIT >> 20} MiB "
                                 f"behind the provider for {lead.lone_budget:g} s ({SHARED_STALL_BUDGET:g} s while "
                                 "other requests may wait for the same answer)", "invalid_request_error", None,
                                 "client_too_slow")
            tail = error_event + b"data: " + message + b"\n\n"
        elif lead.gone:
            return
        elif lead.failure is not None:
            message = error_body(str(lead.failure), "upstream_error", None, "stream_broken")
            tail = error_event + b"data: " + message + b"\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    finally:
        watcher.cancel()
