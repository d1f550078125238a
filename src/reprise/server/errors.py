"""The one table from Reprise's exceptions to an HTTP status and OpenAI's error JSON.

OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes). Every failure that reaches the
server's edge is rendered here, so a status is decided in one place: the most specific
class of the exception found in :data:`STATUSES` wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import orjson

from reprise.errors import (
    AuthError,
    CacheNotConfigured,
    ConfigError,
    Forbidden,
    MethodNotAllowed,
    NotFoundError,
    PayloadTooLarge,
    RepriseError,
    RequestError,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
    Unsupported,
    UpstreamError,
)

Headers = list[tuple[bytes, bytes]]


class Status(NamedTuple):
    """An HTTP status and the OpenAI ``error.type`` that goes with it."""

    code: int
    error_type: str


#: Exception class -> status; an exception takes the entry of the first of its classes
#: (its MRO) listed here. ``UpstreamError`` carries its own status (502, 503 busy, 504).
STATUSES: dict[type[BaseException], Status] = {
    AuthError: Status(401, "authentication_error"),
    Forbidden: Status(403, "permission_error"),
    NotFoundError: Status(404, "not_found_error"),
    MethodNotAllowed: Status(405, "invalid_request_error"),
    PayloadTooLarge: Status(413, "invalid_request_error"),
    TooManyRequests: Status(429, "rate_limit_error"),
    RequestError: Status(400, "invalid_request_error"),
    Unsupported: Status(501, "not_implemented_error"),
    CacheNotConfigured: Status(503, "service_unavailable_error"),
    ServiceUnavailable: Status(503, "service_unavailable_error"),
    ServerError: Status(500, "server_error"),
    UpstreamError: Status(502, "upstream_error"),
    ConfigError: Status(500, "server_error"),
    RepriseError: Status(500, "server_error"),
    BaseException: Status(500, "server_error"),
}


#: ``error.type`` and ``code`` of a provider failure by its status: 504 the provider timed out,
#: 503 the deployment's connections stayed busy (``max_parallel_requests``), else 502.
_UPSTREAM_CODES = {504: "timeout", 503: "upstream_busy"}


class ErrorResponse(NamedTuple):
    status: int
    body: bytes
    headers: Headers


def status_of(kind: type[BaseException]) -> Status:
    """The table's entry for an exception class (its own, or its nearest listed base's)."""
    for cls in kind.__mro__:
        found = STATUSES.get(cls)
        if found is not None:
            return found
    raise AssertionError("unreachable: BaseException is in the table")


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def render_error(exc: BaseException) -> ErrorResponse:
    """Status, body and extra headers for any exception that reaches the server edge.

    A 405 carries ``Allow``. An unexpected exception's text is never shown (it may hold
    internals); Reprise's own messages are written for the client.
    """
    status, error_type = status_of(type(exc))
    if isinstance(exc, RequestError | ServerError):
        headers: Headers = []
        if isinstance(exc, MethodNotAllowed):
            headers.append((b"allow", ", ".join(exc.allowed).encode()))
        elif isinstance(exc, TooManyRequests):
            headers.append((b"retry-after", b"1"))
        return ErrorResponse(status, error_body(exc.message, error_type, exc.param, exc.code), headers)
    if isinstance(exc, UpstreamError):
        kind = _UPSTREAM_CODES.get(exc.status, error_type)
        return ErrorResponse(exc.status, error_body(str(exc), kind, None, exc.code or kind), [])
    if isinstance(exc, RepriseError):
        return ErrorResponse(status, error_body(str(exc), error_type), [])
    return ErrorResponse(status, error_body("internal error", error_type), [])


@contextmanager
def upstream_failure_reported_as(cache_status: str, key: str | None) -> Iterator[None]:
    """Tag a provider failure with what the cache did, so its 502/504 still carries ``x-reprise-cache``."""
    try:
        yield
    except UpstreamError as exc:
        exc.cache_status, exc.cache_key = cache_status, key
        raise
