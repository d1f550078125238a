"""Minimal ASGI primitives: read a bounded body, send a whole response, watch for disconnect.

The server is plain ASGI rather than a framework so that a cache hit costs only
what it must: no request object, no middleware stack, no response class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from reprise.errors import PayloadTooLarge, RequestError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client disconnected before the request body was read."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def header_text(scope: Scope, name: bytes) -> str | None:
    """A request header as text (latin-1, as HTTP/1.1 defines header bytes), or None."""
    raw = header(scope, name)
    return raw.decode("latin-1") if raw is not None else None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError("invalid Content-Length header", param="Content-Length")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:  # checked for every message: without Content-Length one may hold the whole body
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
        if not message.get("more_body"):
            return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)


async def send_bytes(
    send: Send, status: int, body: bytes | memoryview, headers: list[tuple[bytes, bytes]]
) -> None:
    """One sized answer. A ``memoryview`` body (a stored entry's own bytes) is sent without a copy:
    Reprise's protocol (one_write.py) and uvloop's transport take any bytes-like object."""
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def watch_disconnect(receive: Receive) -> asyncio.Task[None]:
    """A task that finishes when the client goes away (call after the body was read)."""

    async def wait() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    return asyncio.ensure_future(wait())
