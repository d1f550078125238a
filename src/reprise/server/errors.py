"""The one table from Reprise's exceptions to OpenAI's error JSON and an HTTP status.

OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``
(https://platform.openai.com/docs/guides/error-codes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import orjson

from reprise.errors import RepriseError, RequestError, UpstreamError


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def render_error(exc: Exception) -> tuple[int, bytes]:
    """Status and body for any exception that reaches the server edge."""
    if isinstance(exc, RequestError):
        return exc.status, error_body(exc.message, exc.error_type, exc.param, exc.code)
    if isinstance(exc, UpstreamError):
        kind = "timeout" if exc.status == 504 else "upstream_error"
        return exc.status, error_body(str(exc), kind, None, kind)
    if isinstance(exc, RepriseError):
        return 500, error_body(str(exc), "server_error")
    return 500, error_body("internal error", "server_error")


@contextmanager
def upstream_failure_reported_as(cache_status: str, key: str | None) -> Iterator[None]:
    """Tag a provider failure with what the cache did, so its 502/504 still carries ``x-reprise-cache``."""
    try:
        yield
    except UpstreamError as exc:
        exc.cache_status, exc.cache_key = cache_status, key
        raise
