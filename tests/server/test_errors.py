"""The one table from exceptions to statuses: complete, and 5xx kept apart from the client's errors."""

from __future__ import annotations

import inspect

import orjson
import pytest

from reprise import errors
from reprise.errors import (
    AuthError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
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
from reprise.observability import inventory
from reprise.server.errors import STATUSES, render_error, status_of

EXPECTED: dict[type[RepriseError], int] = {
    RepriseError: 500,
    ConfigError: 500,
    RequestError: 400,
    AuthError: 401,
    Forbidden: 403,
    NotFoundError: 404,
    MethodNotAllowed: 405,
    PayloadTooLarge: 413,
    TooManyRequests: 429,
    ServerError: 500,
    Unsupported: 501,
    ServiceUnavailable: 503,
    CacheNotConfigured: 503,
    BackendError: 500,
    BackendUnavailable: 500,
    BackendTimeout: 500,
    UpstreamError: 502,
}



def declared_in_errors() -> set[type[RepriseError]]:
    return {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, RepriseError) and cls.__module__ == errors.__name__}


def test_every_exception_of_errors_py_has_its_status_in_the_table() -> None:
    assert declared_in_errors() == set(EXPECTED), "a new exception needs its status here and in STATUSES"
    for cls, status in EXPECTED.items():
        assert status_of(cls).code == status, cls


def test_no_server_error_is_a_request_error() -> None:
    server_side = {cls for cls in declared_in_errors() if status_of(cls).code >= 500}
    server_side |= {cls for cls, status in STATUSES.items() if status.code >= 500}
    for cls in server_side | {inventory.StoreUnavailable}:
        assert not issubclass(cls, RequestError), cls
    for cls in declared_in_errors():
        if issubclass(cls, RequestError):
            assert 400 <= status_of(cls).code < 500, cls


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "code"),
    [
        (RequestError("bad", param="model"), 400, "invalid_request_error", None),
        (AuthError("who", code="invalid_api_key"), 401, "authentication_error", "invalid_api_key"),
        (Forbidden("no"), 403, "permission_error", None),
        (NotFoundError("gone", code="not_found"), 404, "not_found_error", "not_found"),
        (PayloadTooLarge("big"), 413, "invalid_request_error", None),
        (CacheNotConfigured(), 503, "service_unavailable_error", "cache_disabled"),
        (Unsupported("cannot", code="not_supported"), 501, "not_implemented_error", "not_supported"),
        (UpstreamError("down"), 502, "upstream_error", "upstream_error"),
        (UpstreamError("slow", 504), 504, "timeout", "timeout"),
        (inventory.StoreUnavailable("failing", code="cache_unhealthy"), 503, "service_unavailable_error",
         "cache_unhealthy"),
        (ConfigError("wrong", "a.b"), 500, "server_error", None),
    ],
)
def test_rendered_as_openai_error_json(exc: Exception, status: int, error_type: str, code: str | None) -> None:
    rendered = render_error(exc)
    assert rendered.status == status
    error = orjson.loads(rendered.body)["error"]
    assert (error["type"], error["code"]) == (error_type, code)
    assert error["message"]


def test_405_carries_allow() -> None:
    rendered = render_error(MethodNotAllowed("method PUT is not allowed on /x", allowed={"POST", "GET", "HEAD"}))
    assert rendered.status == 405
    assert rendered.headers == [(b"allow", b"GET, HEAD, POST")]


def test_an_unexpected_exception_hides_its_text() -> None:
    rendered = render_error(KeyError("internal detail"))
    assert rendered.status == 500
    assert b"internal detail" not in rendered.body
