"""The answers the HTTP protocol gives itself, before the app sees a request, and their counts.

Every one is OpenAI's error JSON with ``connection: close`` (``/metrics`` counts them by code
as ``reprise_connections_refused_total``): a head too large, a request too slow, a malformed
request, too many pipelined requests or connections.
"""

from __future__ import annotations

import collections
from typing import Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from reprise.server.errors import error_body

#: Requests one connection may have parsed and waiting behind the one being answered.
MAX_PIPELINED: Final = 32

REFUSED: collections.Counter[str] = collections.Counter()
"""Refusals by code in this process (``/metrics``: ``reprise_connections_refused_total``); a few fixed codes."""


class Refusal(Exception):
    """An answer the protocol gives itself; raised inside parser callbacks to stop parsing."""

    def __init__(self, status: int, error_type: str, code: str, message: str, retry_after: bool = False):
        super().__init__(message)
        self.status, self.error_type, self.code, self.message = status, error_type, code, message
        self.retry_after = retry_after

    def render(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        body = error_body(self.message, self.error_type, None, self.code)
        lines = [STATUS_LINE[self.status]]
        lines.extend(name + b": " + value + b"\r\n" for name, value in default_headers)
        lines.append(b"content-type: application/json\r\n")
        if self.retry_after:
            lines.append(b"retry-after: 1\r\n")
        lines.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        lines.append(body)
        return b"".join(lines)


def head_too_large(what: str) -> Refusal:
    return Refusal(431, "invalid_request_error", "request_header_fields_too_large", what)


def timed_out(part: str, seconds: float) -> Refusal:
    message = f"the request {part} was not received within {seconds:g} s"
    return Refusal(408, "invalid_request_error", "request_timeout", message)


MALFORMED: Final = Refusal(
    400, "invalid_request_error", "invalid_http_request",
    "the request is not valid HTTP/1.1 (a malformed request line, header, Content-Length or chunk)",
)
EVICTED: Final = Refusal(
    408, "invalid_request_error", "request_timeout",
    "the connection was closed to make room for others before its request head was complete",
)
TOO_MANY_PIPELINED: Final = Refusal(
    429, "invalid_request_error", "too_many_pipelined_requests",
    f"more than {MAX_PIPELINED} requests were pipelined on one connection; send them after their answers",
)
TOO_MANY_CONNECTIONS: Final = Refusal(
    503, "service_unavailable_error", "too_many_connections",
    "the gateway has too many open connections; retry shortly", retry_after=True,
)
