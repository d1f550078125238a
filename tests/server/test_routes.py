"""The route table, end to end through ``reprise serve``: every route, every way of getting it wrong.

For every route of the table (built here from the same config as the served gateway):
a wrong method is a 405 with ``Allow`` and OpenAI's error JSON, ``HEAD`` works where
``GET`` does, and the "who" column is enforced (401 without a key where one is needed,
403 for a virtual key on a master-key route). Unknown paths are 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reprise.config.loader import parse_config
from reprise.server.app import RepriseApp
from reprise.server.routes import Access, Route
from tests.server.conftest import AUTH, GatewayProcess, gateway_config
from tests.support.stub_upstream import StubUpstream

VIRTUAL_KEY = "sk-routes-virtual"
VIRTUAL = {"Authorization": f"Bearer {VIRTUAL_KEY}"}
STUB_URL = "http://127.0.0.1:9"  # the table does not depend on the provider's address


def routes_config(stub_url: str, **general: Any) -> dict[str, Any]:
    return gateway_config(stub_url, virtual_keys=[{"key": VIRTUAL_KEY, "tenant": "team-r"}], **general)


def table(**general: Any) -> tuple[Route, ...]:
    return RepriseApp(parse_config(routes_config(STUB_URL, **general))).routes.routes


def requests(rows: tuple[Route, ...]) -> list[tuple[Route, str]]:
    """Every (route, a path it answers), a prefix route by one path under its prefix."""
    return [(route, path + "x" if route.prefix else path) for route in rows for path in route.paths]


ALL = requests(table())
IDS = [f"{sorted(route.methods)[0]} {path}" for route, path in ALL]
NEEDS_KEY = [(r, p) for r, p in ALL if r.access is not Access.PUBLIC]
MASTER_ONLY = [(r, p) for r, p in ALL if r.access is Access.MASTER]
ANY_KEY = [(r, p) for r, p in ALL if r.access is Access.KEY]
PUBLIC = [(r, p) for r, p in ALL if r.access is Access.PUBLIC]


@pytest.fixture(scope="module")
def gw(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(routes_config(stub.url), tmp_path_factory.mktemp("routes")).start()
    yield process
    process.stop()


def assert_error_json(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def allowed(route: Route) -> set[str]:
    return set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())


def test_the_table_has_every_route_of_the_gateway() -> None:
    paths = {path for route, path in ALL}
    assert {"/chat/completions", "/v1/chat/completions", "/embeddings", "/v1/embeddings", "/models",
            "/responses", "/v1/responses", "/completions", "/v1/completions",
            "/v1/models", "/health/liveliness", "/health/liveness", "/livez", "/health/readiness", "/readyz",
            "/health", "/openapi.json", "/key/generate", "/key/delete", "/key/list", "/cache/ping",
            "/cache/stats", "/cache/entries", "/cache/entries/x", "/cache/delete", "/cache/flushall",
            "/metrics", "/ui", "/ui/x", "/openai/deployments/x", "/v1/messages", "/messages",
            "/v1/messages/count_tokens", "/messages/count_tokens"} == paths


@pytest.mark.parametrize(("route", "path"), ALL, ids=IDS)
def test_a_wrong_method_is_405_with_allow(gw: GatewayProcess, route: Route, path: str) -> None:
    expected = allowed(route)
    for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH"} - expected):
        r = httpx.request(method, gw.url + path, headers=AUTH, json={})
        error = assert_error_json(r, 405)
        assert set(r.headers["allow"].split(", ")) == expected
        assert method in error["message"] and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("route", "path"), ALL, ids=IDS)
def test_wrong_method_needs_no_key(gw: GatewayProcess, route: Route, path: str) -> None:
    """The method is checked before the caller: a 405 says nothing about keys."""
    method = "PUT"
    assert_error_json(httpx.request(method, gw.url + path), 405)


@pytest.mark.parametrize(
    "path",
    ["/nowhere", "/v1/nowhere", "/v2/chat/completions", "/chat/completions/", "//chat/completions", "/cache/",
     "/cache/nothing", "/key/", "/key/other", "/metrics/x", "/uix", "/health/x", "/openapi.yaml", "/"],
)
def test_unknown_paths_are_404(gw: GatewayProcess, path: str) -> None:
    for method, headers in (("GET", AUTH), ("POST", AUTH), ("GET", {})):
        error = assert_error_json(httpx.request(method, gw.url + path, headers=headers, json={}), 404)
        assert error["code"] == "not_found"


@pytest.mark.parametrize(("route", "path"), NEEDS_KEY, ids=[f"{p}" for _, p in NEEDS_KEY])
def test_routes_that_need_a_key_are_401_without_one(gw: GatewayProcess, route: Route, path: str) -> None:
    (method,) = route.methods
    for headers in ({}, {"Authorization": "Bearer sk-unknown"}, {"Authorization": VIRTUAL_KEY}):
        r = httpx.request(method, gw.url + path, headers=headers, json={})
        if route.reshape is not None:  # Anthropic's routes answer in Anthropic's error shape
            assert r.status_code == 401 and r.json()["type"] == "error"
            error = r.json()["error"]
        else:
            error = assert_error_json(r, 401)
        assert error["type"] == "authentication_error"


@pytest.mark.parametrize(("route", "path"), MASTER_ONLY, ids=[p for _, p in MASTER_ONLY])
def test_master_routes_refuse_a_virtual_key_with_403(gw: GatewayProcess, route: Route, path: str) -> None:
    (method,) = route.methods
    error = assert_error_json(httpx.request(method, gw.url + path, headers=VIRTUAL, json={}), 403)
    assert error["type"] == "permission_error"
    admitted = httpx.request(method, gw.url + path, headers=AUTH, json={})
    assert admitted.status_code not in (401, 403, 405), admitted.text


@pytest.mark.parametrize(("route", "path"), ANY_KEY, ids=[p for _, p in ANY_KEY])
def test_api_routes_admit_a_virtual_key(gw: GatewayProcess, route: Route, path: str) -> None:
    (method,) = route.methods
    r = httpx.request(method, gw.url + path, headers=VIRTUAL, json={})
    assert r.status_code not in (401, 403, 405), r.text  # an empty body is a 400 from the handler


@pytest.mark.parametrize(("route", "path"), PUBLIC, ids=[p for _, p in PUBLIC])
def test_public_routes_need_no_key(gw: GatewayProcess, route: Route, path: str) -> None:
    r = httpx.get(gw.url + path)
    assert r.status_code not in (401, 403, 405), r.text
    if not route.prefix:
        assert r.status_code < 400


def test_head_is_get_without_the_body(gw: GatewayProcess) -> None:
    for path in ("/health", "/livez", "/openapi.json", "/ui/"):
        got, head = httpx.get(gw.url + path), httpx.head(gw.url + path)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers["content-type"] == got.headers["content-type"]
    assert httpx.head(gw.url + "/models").status_code == 401
    assert httpx.head(gw.url + "/models", headers=AUTH).status_code == 200
    refused = httpx.head(gw.url + "/chat/completions", headers=AUTH)
    assert refused.status_code == 405 and refused.headers["allow"] == "POST" and refused.content == b""


def test_metrics_follow_metrics_require_auth(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    (metrics,) = [r for r in table(metrics_require_auth=True) if r.paths == ("/metrics",)]
    assert metrics.access is Access.MASTER
    process = GatewayProcess(routes_config(stub.url, metrics_require_auth=True), tmp_path_factory.mktemp("m"))
    process.start()
    try:
        assert_error_json(httpx.get(process.url + "/metrics"), 401)
        assert_error_json(httpx.get(process.url + "/metrics", headers=VIRTUAL), 403)
        assert httpx.get(process.url + "/metrics", headers=AUTH).status_code == 200
        assert_error_json(httpx.post(process.url + "/metrics", headers=AUTH), 405)
    finally:
        process.stop()
