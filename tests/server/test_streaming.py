"""Streamed answers: stored only when complete, replayed as valid SSE, shared with plain requests."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import orjson
import pytest

from reprise.core.streaming import StreamAssembler
from tests.server.conftest import GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


def stream(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as r:
        data = r.read()
    return r, data


def without_nulls(choices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Choices with null message fields dropped: SSE has no way to say ``"refusal": null``."""
    return [{**c, "message": {k: v for k, v in c["message"].items() if v is not None}} for c in choices]


def assemble(data: bytes) -> StreamAssembler:
    asm = StreamAssembler()
    asm.feed(data)
    return asm


def test_stream_miss_then_replayed_hit(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique("tell me a story"))
    r1, d1 = stream(client, body)
    assert r1.headers["content-type"].startswith("text/event-stream")
    assert r1.headers["x-reprise-cache"] == "miss"
    r2, d2 = stream(client, body)
    assert r2.headers["x-reprise-cache"] == "hit"
    a1, a2 = assemble(d1), assemble(d2)
    assert a1.complete and a2.complete
    assert d2.endswith(b"data: [DONE]\n\n")
    assert a2.completion()["choices"] == a1.completion()["choices"]
    assert b'"choices":[]' not in d1 + d2  # no usage chunk unless asked
    assert upstream.calls()["chat"] == 1


def test_usage_chunk_replayed_when_asked(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique(), stream_options={"include_usage": True})
    _, d1 = stream(client, body)
    r2, d2 = stream(client, body)
    assert r2.headers["x-reprise-cache"] == "hit"
    assert assemble(d1).completion()["usage"]["total_tokens"] > 0
    assert assemble(d2).completion()["usage"] == assemble(d1).completion()["usage"]


def test_stream_and_plain_share_one_entry(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique())
    _, data = stream(client, body)
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.json()["object"] == "chat.completion"
    assert plain.json()["choices"] == assemble(data).completion()["choices"]

    other = chat(unique())
    first = client.post("/chat/completions", json=other).json()
    r, data = stream(client, other)
    assert r.headers["x-reprise-cache"] == "hit"
    assert without_nulls(assemble(data).completion()["choices"]) == without_nulls(first["choices"])
    assert upstream.calls()["chat"] == 2


def test_tool_call_stream_round_trips(client: httpx.Client, upstream: StubUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = chat(unique("please call tool for Paris"), tools=tools)
    _, d1 = stream(client, body)
    first = assemble(d1).completion()["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.json()["choices"][0]["message"]["tool_calls"] == first["message"]["tool_calls"]
    assert upstream.calls()["chat"] == 1


@pytest.mark.parametrize("model", ["cut-stream", "bad-sse", "no-done"])
def test_broken_streams_are_never_stored(client: httpx.Client, upstream: StubUpstream, model: str) -> None:
    body = chat(unique(), model=model)
    for _ in range(2):
        try:
            r, _ = stream(client, body)
            assert r.headers["x-reprise-cache"] == "miss"
        except httpx.RemoteProtocolError:
            pass  # the cut is passed on to the client
    plain = client.post("/chat/completions", json={**body})
    assert plain.headers.get("x-reprise-cache") != "hit"
    assert upstream.calls()["chat"] == 3


def test_client_abort_mid_stream_is_not_stored(gateway: GatewayProcess, client: httpx.Client,
                                               upstream: StubUpstream) -> None:
    body = chat(unique())
    payload = orjson.dumps({**body, "stream": True})
    request = (
        f"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-master-key\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    upstream.set_delay(600)
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(request)
        time.sleep(0.2)
    time.sleep(1.0)  # the upstream answers after the client left
    upstream.set_delay(0)
    r = client.post("/chat/completions", json=body)
    assert r.headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_stream_events_are_valid_json(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique())
    stream(client, body)
    _, data = stream(client, body)
    events = data.strip().split(b"\n\n")
    assert events[-1] == b"data: [DONE]"
    for event in events[:-1]:
        chunk = orjson.loads(event.removeprefix(b"data: "))
        assert chunk["object"] == "chat.completion.chunk"
