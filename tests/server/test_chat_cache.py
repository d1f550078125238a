"""Exact caching of chat completions, end to end through HTTP against a counting upstream."""

from __future__ import annotations

import re
import time

import httpx

from tests.server.conftest import AUTH, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


def test_miss_then_hit_with_headers(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique("给我讲个笑话"))
    first = client.post("/chat/completions", json=body)
    assert first.status_code == 200
    assert first.headers["x-reprise-cache"] == "miss"
    key = first.headers["x-litellm-cache-key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    second = client.post("/chat/completions", json=body)
    assert second.status_code == 200
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.headers["x-litellm-cache-key"] == key
    assert int(second.headers["age"]) >= 0
    assert second.json() == first.json()
    assert "给我讲个笑话" in second.json()["choices"][0]["message"]["content"]
    assert upstream.calls()["chat"] == 1


def test_v1_and_plain_paths_share_entries(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique())
    client.post("/v1/chat/completions", json=body)
    assert client.post("/chat/completions", json=body).headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 1


def test_answer_changing_params_are_separate_entries(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    client.post("/chat/completions", json=chat(prompt, temperature=0.1))
    r = client.post("/chat/completions", json=chat(prompt, temperature=0.9))
    assert r.headers["x-reprise-cache"] == "miss"
    r = client.post("/chat/completions", json=chat(prompt, model="gpt-4o-mini", temperature=0.1))
    assert r.headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 3


def test_bookkeeping_params_and_json_layout_share_an_entry(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    client.post("/chat/completions", json=chat(prompt, seed=3))
    raw = (f'{{ "seed": 3, "user": "bob", "metadata": {{"x": 1}},\n  "messages": [{{"content": "{prompt}",'
           ' "role": "user"}], "model": "gpt-4o", "cache": {"ttl": 60} }')
    r = client.post("/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 1


def test_auth_is_required(gateway: GatewayProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sk-test-master-key"}):
        r = httpx.post(gateway.url + "/chat/completions", json=chat("x"), headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"


def test_upstream_errors_pass_through_and_are_never_stored(client: httpx.Client, upstream: StubUpstream) -> None:
    for model, status in (("fail-500", 500), ("fail-429", 429), ("fail-400", 400)):
        body = chat(unique(), model=model)
        for _ in range(2):
            r = client.post("/chat/completions", json=body)
            assert r.status_code == status
            assert "error" in r.json()
            assert r.headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 6


def test_upstream_timeout_is_504_and_not_stored(make_gateway: object, stub: StubUpstream) -> None:
    from tests.server.conftest import gateway_config

    config = gateway_config(stub.url)
    for entry in config["model_list"]:
        if entry["model_name"] == "slow":
            entry["litellm_params"]["timeout"] = 0.5
    gw = make_gateway(config)  # type: ignore[operator]
    stub.reset()
    body = chat(unique(), model="slow")
    started = time.monotonic()
    r = httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH, timeout=10)
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "timeout"
    assert r.headers["x-reprise-cache"] == "miss"
    assert time.monotonic() - started < 4
    r = httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH, timeout=10)
    assert r.status_code == 504
    assert stub.calls()["chat"] == 2


def test_mock_response_model_answers_and_caches(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique(), model="mock")
    first = client.post("/chat/completions", json=body)
    assert first.json()["choices"][0]["message"]["content"] == "mocked!"
    second = client.post("/chat/completions", json=body)
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.json() == first.json()
    assert upstream.calls()["chat"] == 0


def test_models_and_health(client: httpx.Client) -> None:
    ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert {"gpt-4o", "mock"} <= ids
    assert client.get("/models").status_code == 200
    assert client.get("/health/liveliness").status_code == 200
    assert client.get("/health/readiness").json()["status"] == "healthy"


def test_a_plain_answer_cut_short_is_sent_as_it_came_and_never_stored(client: httpx.Client,
                                                                       upstream: StubUpstream) -> None:
    """A plain and a streamed request share one entry, and a stream whose choice has no
    finish_reason is never stored: the plain answer must not be either (found: it was, and
    then replayed to both kinds of client as a hit)."""
    for n in (1, 2):
        body = chat(unique("cut short"), model="unfinished", n=n)
        first = client.post("/chat/completions", json=body)
        assert first.status_code == 200 and first.headers["x-reprise-cache"] == "miss"
        choices = first.json()["choices"]
        assert [c["finish_reason"] for c in choices] == ["stop"] * (n - 1) + [None]
        again = client.post("/chat/completions", json=body)
        assert again.status_code == 200 and again.headers["x-reprise-cache"] == "miss"
        assert again.json()["id"] != first.json()["id"]  # the provider's fresh answer, not a replay
        with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as streamed:
            streamed.read()
        assert streamed.headers["x-reprise-cache"] == "miss"
    assert upstream.calls_for("unfinished") == 6


def test_a_plain_answer_carrying_an_error_is_a_502_never_stored(client: httpx.Client,
                                                                upstream: StubUpstream) -> None:
    """HTTP 200 with ``error`` beside the choices is the provider's failure, as the same
    ``error`` in a stream is: the client is told so (with the provider's message) and the
    repeat, plain or streamed, asks the provider again."""
    body = chat(unique("error inside"), model="error-field")
    for call in (1, 2):
        r = client.post("/chat/completions", json=body)
        assert r.status_code == 502, r.text
        assert r.headers["x-reprise-cache"] == "miss"
        error = r.json()["error"]
        assert error["type"] == "upstream_error" and "upstream overloaded" in error["message"]
        assert upstream.calls_for("error-field") == call
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as streamed:
        streamed.read()
    assert streamed.headers["x-reprise-cache"] == "miss"
    assert upstream.calls_for("error-field") == 3
