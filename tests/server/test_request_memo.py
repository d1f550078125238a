"""A repeated body's facts come from a memo (core/chat_request.py); nothing else may change.

The memo keeps what a body decides by itself; everything per request (the Cache-Control
header, the caller, the key store, the entry's life) is still read every time. And the
SSE form of a stored answer is made once per usage choice (core/replay_memo.ReplayMemo).
"""

from __future__ import annotations

import json

import httpx
import orjson

from tests.server.conftest import AUTH, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


def post_raw(client: httpx.Client, raw: bytes, **headers: str) -> httpx.Response:
    return client.post("/chat/completions", content=raw, headers={"content-type": "application/json", **headers})


def test_the_same_bytes_still_obey_each_requests_header(client: httpx.Client, upstream: StubUpstream) -> None:
    raw = orjson.dumps(chat(unique()))
    assert post_raw(client, raw).headers["x-reprise-cache"] == "miss"
    assert post_raw(client, raw).headers["x-reprise-cache"] == "hit"
    assert post_raw(client, raw, **{"cache-control": "no-cache"}).headers["x-reprise-cache"] != "hit"
    assert post_raw(client, raw).headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 2  # the first, and the no-cache request


def test_an_invalid_body_is_refused_every_time(client: httpx.Client) -> None:
    raw = orjson.dumps({"model": "gpt-4o", "messages": [], "x": unique()})
    for _ in range(3):
        answer = post_raw(client, raw)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages"


def test_a_deleted_entry_is_a_miss_for_the_same_bytes(client: httpx.Client, upstream: StubUpstream) -> None:
    raw = orjson.dumps(chat(unique()))
    key = post_raw(client, raw).headers["x-litellm-cache-key"]
    assert post_raw(client, raw).headers["x-reprise-cache"] == "hit"
    assert client.post("/cache/delete", json={"keys": [key]}).status_code == 200
    assert post_raw(client, raw).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_the_caller_is_checked_for_every_repeat(gateway: GatewayProcess) -> None:
    raw = orjson.dumps(chat(unique()))
    with httpx.Client(base_url=gateway.url, timeout=10) as anonymous:
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=10) as master:
            assert post_raw(master, raw).status_code == 200
        assert post_raw(anonymous, raw).status_code == 401
        assert post_raw(anonymous, raw, authorization="Bearer sk-wrong-but-long-enough").status_code == 401


def test_replays_follow_each_clients_usage_choice(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique())
    assert client.post("/chat/completions", json=body).headers["x-reprise-cache"] == "miss"
    for usage in (True, False, True, False):
        streamed = {**body, "stream": True, **({"stream_options": {"include_usage": True}} if usage else {})}
        reply = client.post("/chat/completions", json=streamed)
        assert reply.headers["x-reprise-cache"] == "hit"
        events = [json.loads(line[6:]) for line in reply.text.splitlines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
        assert any(e.get("usage") for e in events) is usage
    assert upstream.calls()["chat"] == 1


def test_prompts_are_logged_for_repeats_too(make_gateway: object, upstream: StubUpstream) -> None:
    gw = make_gateway(log_prompts=True)  # type: ignore[operator]
    prompt = unique("log me")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for _ in range(2):
            assert c.post("/chat/completions", json=chat(prompt)).status_code == 200
    lines = [line for line in gw.access_lines(2) if prompt in line]
    assert len(lines) == 2 and "cache=hit" in lines[1]


def test_a_stream_without_usage_is_not_stored_for_plain_clients(client: httpx.Client, upstream: StubUpstream) -> None:
    """Found by an outside review: a stream asked with ``include_usage: false`` was stored without
    usage, so a later plain hit lacked the ``usage`` the provider's plain answer has."""
    body = chat(unique())
    streamed = {**body, "stream": True, "stream_options": {"include_usage": False}}
    assert client.post("/chat/completions", json=streamed).status_code == 200
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "miss"
    assert plain.json()["usage"]["total_tokens"] > 0
    again = client.post("/chat/completions", json=streamed)  # the plain answer, replayed without usage
    assert again.headers["x-reprise-cache"] == "hit"
    assert '"usage"' not in again.text.replace('"usage":null', "")
