"""Bad requests get OpenAI error JSON with the right 4xx status, never a 500."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream


def assert_error(r: httpx.Response, status: int, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"]
    assert {"message", "type", "param", "code"} <= set(error)
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1,2]", 400, None),
        (b"", 400, None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "gpt-4o"}', 400, "messages"),
        (b'{"model": "gpt-4o", "messages": []}', 400, "messages"),
        (b'{"model": "gpt-4o", "messages": ["hi"]}', 400, "messages[0]"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user"}], "temperature": "hot"}', 400, "temperature"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user"}], "n": 0}', 400, "n"),
        (b'{"model": "gpt-4o", "messages": [{"role": "user"}], "stream": "yes"}', 400, "stream"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
def test_malformed_chat_requests(client: httpx.Client, raw: bytes, status: int, param: str | None) -> None:
    r = client.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_error(r, status, param)


def test_routes_and_methods(client: httpx.Client) -> None:
    assert_error(client.get("/chat/completions"), 405)
    assert_error(client.post("/nowhere", json={}), 404)


def test_oversized_body_is_413(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream) -> None:
    gw = make_gateway(gateway_config(stub.url, max_request_size_mb=0.01))
    big = chat("x" * 20_000)
    r = httpx.post(gw.url + "/chat/completions", json=big, headers=AUTH)
    assert_error(r, 413)
    ok = httpx.post(gw.url + "/chat/completions", json=chat(unique()), headers=AUTH)
    assert ok.status_code == 200


def test_unknown_model_lists_models(client: httpx.Client, upstream: StubUpstream) -> None:
    r = client.post("/chat/completions", json=chat("x", model="gpt-9"))
    assert_error(r, 404, "model")
    assert "gpt-4o" in r.json()["error"]["message"]
    assert upstream.calls()["chat"] == 0
