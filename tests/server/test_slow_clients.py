"""Bounded request heads and slow clients, through a real ``reprise serve`` and raw sockets.

Each attack holds its connections while a normal client makes a request, which must
succeed. Regression tests for issue 12: a 16 MB header was read without a key, unfinished
heads and bodies were waited for forever, and idle connections were never let go.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

DEADLINE = 1.0  # request_head_timeout / request_body_timeout / keep_alive_timeout of the "tight" gateway
CAP = 8  # max_connections of the "capped" gateway
KEY_LINE = b"Authorization: Bearer sk-test-master-key\r\n"


@pytest.fixture(scope="module")
def tight(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """Default size limits, one-second deadlines."""
    config = gateway_config(stub.url, request_head_timeout=DEADLINE, request_body_timeout=DEADLINE,
                            keep_alive_timeout=DEADLINE)
    gw = GatewayProcess(config, tmp_path_factory.mktemp("tight")).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def capped(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A small connection cap and long deadlines, so that attackers hold their connections."""
    config = gateway_config(stub.url, max_connections=CAP, request_head_timeout=60, request_body_timeout=60)
    gw = GatewayProcess(config, tmp_path_factory.mktemp("capped")).start()
    yield gw
    gw.stop()


# -- raw sockets ----------------------------------------------------------------------


def connect(gw: GatewayProcess, first: bytes = b"", timeout: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    if first:
        send(sock, first)
    return sock


def send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # answered and closed before everything was read: the answer is still to be read


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout fails the test)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not piece:
            return data
        data += piece


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def assert_refused(answer: bytes, status: int, code: str) -> None:
    got, headers, body = parse(answer)
    assert got == status, answer[:300]
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == code


def post_head(length: int, key: bool = True, extra: bytes = b"") -> bytes:
    return (b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + (KEY_LINE if key else b"") + extra + b"Content-Length: %d\r\n\r\n" % length)


def assert_served(gw: GatewayProcess) -> None:
    """A normal client: a fresh connection, a chat request with the key, 200."""
    r = httpx.post(gw.url + "/chat/completions", json=chat(unique()), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text


# -- request heads --------------------------------------------------------------------


def test_an_oversized_header_is_431_and_closed_without_a_key(tight: GatewayProcess) -> None:
    """Was: a 16 MB header read in full (eight unfinished 32 MB heads: 160 -> 448 MB)."""
    with ExitStack() as stack:
        attackers = [stack.enter_context(connect(tight)) for _ in range(8)]
        for sock in attackers:  # unfinished: no blank line ends these heads
            send(sock, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
        assert_served(tight)
        for sock in attackers:
            assert_refused(read_until_closed(sock), 431, "request_header_fields_too_large")
    with connect(tight, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n") as sock:
        assert_refused(read_until_closed(sock), 431, "request_header_fields_too_large")


def test_too_many_headers_is_431(tight: GatewayProcess) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
    with connect(tight, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n") as sock:
        assert_served(tight)
        assert_refused(read_until_closed(sock), 431, "request_header_fields_too_large")
    with connect(tight, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + fields) as sock:  # unfinished, too
        assert_refused(read_until_closed(sock), 431, "request_header_fields_too_large")


def test_large_heads_within_the_limits_are_served(tight: GatewayProcess) -> None:
    """60 KB of headers, 90 fields, and a 300 KB body read together with its head: all served."""
    headers = {**AUTH, "x-big": "a" * 60_000, **{f"x-f{i}": "v" for i in range(88)}}
    r = httpx.post(tight.url + "/chat/completions", json=chat(unique()), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    body = orjson.dumps(chat(unique(), user="u" * 300_000))
    with connect(tight, post_head(len(body), extra=b"Connection: close\r\n") + body) as sock:
        assert parse(read_until_closed(sock))[0] == 200


def test_a_head_that_never_finishes_is_408_after_the_deadline(tight: GatewayProcess) -> None:
    """Slowloris: was a connection held forever, and ~1,000 of them locked every client out."""
    with ExitStack() as stack:
        started = time.monotonic()
        partial = [stack.enter_context(connect(tight, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"))
                   for _ in range(5)]
        silent = stack.enter_context(connect(tight))
        trickle = stack.enter_context(connect(tight, b"GET /v1/models HTTP/1.1\r\n"))
        assert_served(tight)
        for _ in range(8):  # one header byte at a time: progress does not extend the deadline
            send(trickle, b"X")
            time.sleep(DEADLINE / 4)
        for sock in [*partial, trickle]:
            assert_refused(read_until_closed(sock), 408, "request_timeout")
        assert read_until_closed(silent) == b""  # never sent a byte: closed without an answer
        assert time.monotonic() - started >= DEADLINE * 0.9


# -- request bodies -------------------------------------------------------------------


def test_a_body_that_stalls_is_408_after_the_deadline(tight: GatewayProcess) -> None:
    """Was: an authenticated partial body kept its connection (and the handler) forever."""
    with ExitStack() as stack:
        started = time.monotonic()
        stalled = stack.enter_context(connect(tight, post_head(1000) + b'{"model": "gpt-4o"'))
        trickle = stack.enter_context(connect(tight, post_head(1000)))
        assert_served(tight)
        for _ in range(8):  # a byte at a time: still one deadline for the whole body
            send(trickle, b" ")
            time.sleep(DEADLINE / 4)
        for sock in (stalled, trickle):
            assert_refused(read_until_closed(sock), 408, "request_timeout")
        assert time.monotonic() - started >= DEADLINE * 0.9
    assert_served(tight)


def test_an_answer_before_the_body_does_not_wait_for_the_rest(capped: GatewayProcess) -> None:
    """No key: 401 at once, then the connection closes; the body deadline (60 s here) is not needed."""
    with connect(capped, post_head(1_000_000, key=False) + b"{", timeout=10) as sock:
        answer = read_until_closed(sock)
    assert parse(answer)[0] == 401


def test_an_idle_kept_alive_connection_closes_after_keep_alive_timeout(tight: GatewayProcess) -> None:
    with connect(tight, b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n") as sock:
        started = time.monotonic()
        assert parse(read_until_closed(sock))[0] == 200
    assert time.monotonic() - started < 10  # was 30 s, hard-coded


# -- the connection cap ---------------------------------------------------------------


def _closed(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    return read_until_closed(sock)  # returns on EOF (or reset); a socket left open times out


@pytest.mark.parametrize("first", [b"", b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"], ids=["idle", "slow-head"])
def test_connections_beyond_the_cap_close_the_longest_idle(capped: GatewayProcess, first: bytes) -> None:
    """Three times the cap in idle (or slowly sent) connections; a normal client is still served."""
    with ExitStack() as stack:
        held = []
        for _ in range(3 * CAP):
            held.append(stack.enter_context(connect(capped, first)))
            time.sleep(0.02)  # so that "longest idle" is the order they were opened in
        assert_served(capped)
        assert_served(capped)
        for sock in held[: 2 * CAP]:
            answer = _closed(sock)
            if first:  # a partial head is told why (an idle connection just closes)
                assert_refused(answer, 408, "request_timeout")
            else:
                assert answer == b""


def test_busy_connections_at_the_cap_refuse_a_new_one_with_503(capped: GatewayProcess) -> None:
    """Every slot holds a request being received: a new connection gets a clear 503, not a hang."""
    with ExitStack() as stack:
        busy = [stack.enter_context(connect(capped, post_head(1000) + b"{")) for _ in range(CAP)]
        time.sleep(0.5)  # every body has begun
        with connect(capped, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + KEY_LINE + b"\r\n") as extra:
            answer = read_until_closed(extra)
        assert_refused(answer, 503, "too_many_connections")
        assert parse(answer)[1]["retry-after"] == "1"
        for sock in busy:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # the slots free as the gateway sees the closes
        r = httpx.post(capped.url + "/chat/completions", json=chat(unique()), headers=AUTH, timeout=30)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text


# -- workers --------------------------------------------------------------------------


def test_workers_get_the_same_limits(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> None:
    gw = GatewayProcess(gateway_config(stub.url), tmp_path_factory.mktemp("workers"),
                        extra_args=["--workers", "2"]).start(timeout=30)
    try:
        for _ in range(4):  # the kernel spreads connections over both workers
            with connect(gw, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n") as s:
                assert_refused(read_until_closed(s), 431, "request_header_fields_too_large")
        assert_served(gw)
    finally:
        gw.stop()


def test_refusals_are_counted_in_metrics(tight: GatewayProcess) -> None:
    """Was: 431s and 408s were answered by the protocol and seen nowhere but by the client."""
    def refused() -> float:
        text = httpx.get(tight.url + "/metrics", headers=AUTH, timeout=10).text
        series = 'reprise_connections_refused_total{code="request_header_fields_too_large"}'
        line = next((ln for ln in text.splitlines() if ln.startswith(series)), None)
        return float(line.split()[-1]) if line else 0.0

    before = refused()
    for _ in range(3):
        with connect(tight, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n") as sock:
            assert_refused(read_until_closed(sock), 431, "request_header_fields_too_large")
    assert refused() == before + 3


# -- per-key limits ---------------------------------------------------------------------------
# Was: one key holder could fill every connection of the process with slow bodies (600 partial
# bodies with a valid key: 6 of 154 normal requests served, README "Hostile load").

KEY_A, KEY_B, KEY_ONE = "sk-tenant-a-key-0001", "sk-tenant-b-key-0002", "sk-tenant-c-key-0003"


@pytest.fixture(scope="module")
def per_key(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = gateway_config(stub.url, max_parallel_requests_per_key=3, request_body_timeout=60,
                            virtual_keys=[{"key": KEY_A, "tenant": "a"}, {"key": KEY_B, "tenant": "b"},
                                          {"key": KEY_ONE, "tenant": "c", "max_parallel_requests": 1}])
    gw = GatewayProcess(config, tmp_path_factory.mktemp("per-key")).start()
    yield gw
    gw.stop()


def as_key(gw: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(gw.url + "/chat/completions", json=chat(unique()), timeout=30,
                      headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize(("key", "limit"), [(KEY_A, 3), (KEY_ONE, 1)])
def test_a_key_at_its_limit_gets_429_and_others_are_served(per_key: GatewayProcess, key: str, limit: int) -> None:
    head = (b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{")
    with ExitStack() as stack:
        holders = [stack.enter_context(connect(per_key, head)) for _ in range(limit)]
        time.sleep(0.3)  # the gateway has admitted them and waits for their bodies
        refused = as_key(per_key, key)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_parallel_requests"
        assert refused.headers["retry-after"] == "1"
        assert as_key(per_key, KEY_B).status_code == 200  # another tenant's key
        assert httpx.post(per_key.url + "/chat/completions", json=chat(unique()), headers=AUTH,
                          timeout=30).status_code == 200  # the master key has no such limit
        for sock in holders:
            sock.close()
    deadline = time.monotonic() + 10
    while (status := as_key(per_key, key).status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.1)  # the gateway notices the closed connections and frees their slots
    assert status == 200


# -- pipelining (the protocol makes its own request cycles: server/protocol.py) ------------


def test_pipelined_requests_are_answered_in_order_on_one_connection(tight: GatewayProcess) -> None:
    """Three requests in one write: three answers, in order, each complete (HTTP/1.1 pipelining)."""
    bodies = [orjson.dumps(chat(unique())) for _ in range(3)]
    sock = connect(tight, b"".join(post_head(len(body)) + body for body in bodies)
                   + b"GET /v1/models?x=%41 HTTP/1.1\r\nHost: x\r\n" + KEY_LINE + b"Connection: close\r\n\r\n")
    answer = read_until_closed(sock)
    sock.close()
    contents = []
    for _ in range(3):
        status, headers, rest = parse(answer)
        assert status == 200, answer[:300]
        length = int(headers["content-length"])
        completion = orjson.loads(rest[:length])
        contents.append(completion["choices"][0]["message"]["content"])
        answer = rest[length:]
    for body, content in zip(bodies, contents, strict=True):  # each answer is its own request's
        assert orjson.loads(body)["messages"][-1]["content"] in content
    status, headers, rest = parse(answer)
    assert status == 200 and headers["connection"] == "close"
    assert orjson.loads(rest)["data"], rest[:300]


@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["header-without-colon", "content-length-not-a-number", "bad-chunk-size", "length-and-chunked"])
def test_malformed_http_is_a_400_in_openai_error_json(tight: GatewayProcess, request_bytes: bytes) -> None:
    """Was: uvicorn's ``text/plain`` "Invalid HTTP request received." (every other error is JSON)."""
    with connect(tight, request_bytes) as sock:
        answer = read_until_closed(sock)
    assert_refused(answer, 400, "invalid_http_request")
    assert b"not valid HTTP/1.1" in answer
    assert_served(tight)
