"""Identical concurrent misses make one provider call, also when that call fails.

Promised by the README ("Streaming, embeddings, single-flight, errors"): N identical
requests arriving while the answer is not cached cause one upstream call per process;
all N get the answer or the same failure (the provider's error status and body, a 504
timeout, a 502 connection failure), and the next request after a failure leads anew. The
call belongs to no single client: a streaming leader that hangs up does not cancel it
while others wait. A 502/504 body names the model, never the provider's URL or credentials.

Concurrency comes from real threads released together by a barrier; the stub holds each
call open (``stall``, or a delay) so the followers arrive while the leader is in flight.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, free_port, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

CLIENTS = 8
CLOSED_PORT = free_port()  # bound once and released: nothing listens there


def failure_config(stub_url: str) -> dict[str, Any]:
    """The usual models, ``stall`` timing out after 1 s, and two unreachable deployments."""
    config = gateway_config(stub_url)
    for entry in config["model_list"]:
        if entry["model_name"] == "stall":
            entry["litellm_params"]["timeout"] = 1
    for name, base in (("down", f"http://127.0.0.1:{CLOSED_PORT}/v1"),
                       ("leaky", f"http://user:s3cret@127.0.0.1:{CLOSED_PORT}/v1")):
        config["model_list"].append({"model_name": name, "litellm_params": {
            "model": f"openai/{name}", "api_base": base, "api_key": "sk-upstream", "timeout": 3}})
    return config


@pytest.fixture(scope="module")
def gw(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = GatewayProcess(failure_config(stub.url), tmp_path_factory.mktemp("failures")).start()
    yield process
    process.stop()


def together(count: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``call`` from ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def run(_: int) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def post(gw: GatewayProcess, path: str, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: httpx.post(gw.url + path, json=body, headers=AUTH, timeout=15)


def test_a_timeout_is_shared_then_the_next_request_leads_anew(gw: GatewayProcess, upstream: StubUpstream) -> None:
    body = chat(unique("stalled"), model="stall")
    replies = together(CLIENTS, post(gw, "/chat/completions", body))
    assert [r.status_code for r in replies] == [504] * CLIENTS, replies[0].text
    assert len({r.text for r in replies}) == 1  # one failure, shared
    assert upstream.calls_for("stall") == 1
    message = replies[0].json()["error"]["message"]
    assert "stall" in message and "timed out" in message
    assert "127.0.0.1" not in replies[0].text and str(upstream.port) not in replies[0].text

    again = post(gw, "/chat/completions", body)()
    assert again.status_code == 504
    assert upstream.calls_for("stall") == 2  # a failure is not remembered


def test_a_provider_error_is_shared_with_its_status_and_body(gw: GatewayProcess, upstream: StubUpstream) -> None:
    upstream.set_delay(1000)  # the provider takes a second to fail, so all eight overlap
    body = chat(unique("failing"), model="fail-500")
    replies = together(CLIENTS, post(gw, "/chat/completions", body))
    assert [r.status_code for r in replies] == [500] * CLIENTS
    assert {r.json()["error"]["message"] for r in replies} == {"The server had an error while processing your request."}
    assert upstream.calls_for("fail-500") == 1
    assert post(gw, "/chat/completions", body)().status_code == 500
    assert upstream.calls_for("fail-500") == 2


def test_a_connection_failure_is_the_same_502_for_everyone(gw: GatewayProcess) -> None:
    replies = together(CLIENTS, post(gw, "/chat/completions", chat(unique("unreachable"), model="down")))
    assert [r.status_code for r in replies] == [502] * CLIENTS
    assert len({r.text for r in replies}) == 1
    assert replies[0].json()["error"]["type"] == "upstream_error"


def test_an_embeddings_failure_is_shared(gw: GatewayProcess, upstream: StubUpstream) -> None:
    upstream.set_delay(1000)
    body = {"model": "fail-500", "input": unique("failing vectors")}
    replies = together(CLIENTS, post(gw, "/embeddings", body))
    assert [r.status_code for r in replies] == [500] * CLIENTS
    assert len({r.json()["error"]["message"] for r in replies}) == 1
    assert upstream.calls_for("fail-500") == 1


def test_no_store_embeddings_are_still_shared(gw: GatewayProcess, upstream: StubUpstream) -> None:
    upstream.set_delay(1000)
    body = {"model": "text-embedding-3-small", "input": unique("no-store vectors"), "cache": {"no-store": True}}
    replies = together(CLIENTS, post(gw, "/embeddings", body))
    assert [r.status_code for r in replies] == [200] * CLIENTS
    assert len({orjson.dumps(r.json()["data"]) for r in replies}) == 1
    assert upstream.calls_for("text-embedding-3-small") == 1


def streamed(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
    with httpx.stream("POST", url + "/chat/completions", json=body, headers=AUTH, timeout=30) as response:
        return response.status_code, response.read()


def text_of(data: bytes) -> str:
    events = [e.removeprefix(b"data: ") for e in data.strip().split(b"\n\n")]
    assert events[-1] == b"[DONE]", data[-200:]
    chunks = [orjson.loads(e) for e in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_followers_get_the_whole_stream_when_the_leader_hangs_up(gw: GatewayProcess,
                                                                 upstream: StubUpstream) -> None:
    text = unique("a story told slowly in many words")  # about 3 s of chunks from slow-stream
    body = chat(text, model="slow-stream", stream=True)
    payload = orjson.dumps(body)
    head = (f"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    leader = socket.create_connection(("127.0.0.1", gw.port), timeout=15)
    try:
        leader.sendall(head + payload)
        seen = b""
        while b"data: {" not in seen:  # the leader's first chunk
            piece = leader.recv(65536)
            assert piece, seen
            seen += piece
        with ThreadPoolExecutor(4) as pool:
            followers = [pool.submit(streamed, gw.url, body) for _ in range(4)]
            time.sleep(1.0)  # not an assertion: lets the followers reach the gateway first
            leader.close()  # the leader hangs up mid-stream
            results = [f.result() for f in followers]
    finally:
        leader.close()
    assert [status for status, _ in results] == [200] * 4
    texts = {text_of(data) for _, data in results}
    assert len(texts) == 1 and texts.pop().startswith(f"echo: {text} #")
    assert upstream.calls_for("slow-stream") == 1
    later = httpx.post(gw.url + "/chat/completions", json={**body, "stream": False}, headers=AUTH, timeout=10)
    assert later.headers["x-reprise-cache"] == "hit"
    assert upstream.calls_for("slow-stream") == 1


@pytest.mark.parametrize("stream", [False, True])
def test_errors_name_the_model_never_the_url_or_credentials(gw: GatewayProcess, stream: bool) -> None:
    reply = post(gw, "/chat/completions", chat(unique("leak"), model="leaky", stream=stream))()
    assert reply.status_code == 502, reply.text
    assert "leaky" in reply.json()["error"]["message"]
    for secret in ("s3cret", "user:", "127.0.0.1", str(CLOSED_PORT)):
        assert secret not in reply.text
    assert "s3cret" not in gw.log  # the log names the host, without user:password@



def test_a_stream_asked_without_usage_is_stored_by_no_request_that_waited_for_it(
        gw: GatewayProcess, upstream: StubUpstream) -> None:
    """Found from outside: the leader's ``include_usage: false`` stream has no usage, so it is never
    stored; a plain request that joined it stored it anyway (a follower stores what a ``no-store``
    leader did not), and plain hits then lacked the provider's usage."""
    text = unique("a story told slowly without usage")
    body = {**chat(text, model="slow-stream", stream=True), "stream_options": {"include_usage": False}}
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=20) as client, ThreadPoolExecutor(2) as pool:
        with client.stream("POST", "/chat/completions", json=body) as leader:
            chunks = leader.iter_bytes()
            assert b"data: {" in next(chunks)  # the stream is open: the next identical request waits for it
            plain = {**body, "stream": False}
            del plain["stream_options"]
            follower = pool.submit(client.post, "/chat/completions", json=plain)
            time.sleep(0.5)  # not an assertion: lets the follower reach the gateway while the stream runs
            rest = b"".join(chunks)
        joined = follower.result()
    assert rest.endswith(b"data: [DONE]\n\n") and joined.status_code == 200, joined.text
    assert upstream.calls_for("slow-stream") == 1  # the follower shared the leader's call
    again = httpx.post(gw.url + "/chat/completions", json={**body, "stream": False}, headers=AUTH, timeout=20)
    assert again.headers["x-reprise-cache"] == "miss", "stored by the request that waited"
    assert again.json()["usage"] is not None
