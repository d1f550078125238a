"""Clients that do not read their answers, through a real ``reprise serve`` and raw sockets.

Regression tests for findings from outside (2026-12-04): a connection that pipelined
requests and never read its answers waited forever on its unsent data and counted as busy
(135 of them answered every other client 503); a connection closed while its answer was
unsent kept its socket past ``max_connections`` until the process ran out of file
descriptors; and every non-reader held its own copy of a large answer (20 of them took the
gateway from 220 MB to 2.6 GB). Bounds: ``response_send_timeout``,
``max_unsent_response_mb`` and the connection cap (server/protocol.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, GatewayProcess, gateway_config, unique
from tests.server.test_slow_clients import KEY_LINE, assert_served, parse
from tests.support.stub_upstream import StubUpstream

CAP = 8
SEND_TIMEOUT = 1.0
BUDGET_MB = 16


def _gateway(stub: StubUpstream, tmp: pytest.TempPathFactory, name: str, **general: object) -> GatewayProcess:
    config = gateway_config(stub.url, request_head_timeout=60, keep_alive_timeout=60, **general)
    return GatewayProcess(config, tmp.mktemp(name)).start()


@pytest.fixture(scope="module")
def capped(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A small connection cap and a send timeout long enough that non-readers hold their slots."""
    gw = _gateway(stub, tmp_path_factory, "capped", max_connections=CAP, response_send_timeout=120)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def quick(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = _gateway(stub, tmp_path_factory, "quick", response_send_timeout=SEND_TIMEOUT)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def budget(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = _gateway(stub, tmp_path_factory, "budget", response_send_timeout=120, max_unsent_response_mb=BUDGET_MB)
    yield gw
    gw.stop()


def large_hit(gw: GatewayProcess, dimensions: int = 1024) -> bytes:
    """A request whose answer (~5.5 MB at 1,024 dimensions) is now cached."""
    body = orjson.dumps({"model": "text-embedding-3-small", "dimensions": dimensions,
                         "input": [f"large {unique()} {i}" for i in range(256)]})
    r = httpx.post(gw.url + "/embeddings", content=body, headers={**AUTH, "content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 200 and len(r.content) > dimensions * 4000, r.text[:300]
    return (b"POST /embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + KEY_LINE
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def non_reader(gw: GatewayProcess, request: bytes) -> socket.socket:
    """Sends ``request`` (for a large answer) and reads none of its answer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(request)
    return sock


def refused(gw: GatewayProcess, code: str) -> float:
    text = httpx.get(gw.url + "/metrics", headers=AUTH, timeout=10).text
    series = f'reprise_connections_refused_total{{code="{code}"}}'
    line = next((ln for ln in text.splitlines() if ln.startswith(series)), None)
    return float(line.split()[-1]) if line else 0.0


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s"
        time.sleep(0.1)


def open_sockets(gw: GatewayProcess) -> int:
    """TCP sockets the gateway process holds (listening and upstream ones included)."""
    assert gw.proc is not None
    fd_dir = f"/proc/{gw.proc.pid}/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        try:
            count += os.readlink(f"{fd_dir}/{fd}").startswith("socket:")
        except FileNotFoundError:  # closed between the listing and the read: not held
            pass
    return count


def read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while piece := sock.recv(1 << 16):
            data += piece
    except (ConnectionResetError, TimeoutError):
        pass
    return data


@pytest.mark.parametrize("keyless", [True, False], ids=["pipelined-openapi-no-key", "large-hit"])
def test_non_readers_at_the_cap_make_room_and_free_their_sockets(capped: GatewayProcess, keyless: bool) -> None:
    """Was: 503 ``too_many_connections`` for everyone, and sockets kept past the cap."""
    from reprise.server.protocol import MAX_PIPELINED

    openapi = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"  # open without a key, ~44 KB an answer
    request = openapi * (MAX_PIPELINED + 1) if keyless else large_hit(capped)
    before = open_sockets(capped)
    with ExitStack() as stack:
        for _ in range(3 * CAP):
            stack.enter_context(non_reader(capped, request))
            time.sleep(0.05)
        time.sleep(1.0)  # every one of them has stalled on its unsent answers
        assert_served(capped)
        assert_served(capped)
        # Those closed to make room were aborted, not left to flush to a client that never reads.
        assert open_sockets(capped) <= before + CAP + 2


def test_a_client_that_reads_nothing_is_cut_off_after_the_send_timeout(quick: GatewayProcess) -> None:
    request = large_hit(quick)
    before = refused(quick, "response_send_timeout")
    sock = non_reader(quick, request)
    with sock:
        wait_for(lambda: refused(quick, "response_send_timeout") == before + 1)
        assert len(read_all(sock)) < 5_000_000  # the rest was dropped with the connection


def test_a_slow_but_steady_reader_is_never_cut_off(quick: GatewayProcess) -> None:
    """About 6 s of reading a ~6 MB cached answer at ~1 MB/s (64 KB each 60 ms), with a one-second
    send timeout: the gateway stalls on this client (socket buffers hold ~3 MB), and all arrives.

    (Progress is what the client's TCP stack acknowledges: on loopback it reopens its window in
    steps of up to 64 KiB, so a client taking less than that per send timeout looks stalled.)"""
    body = orjson.dumps({"model": "text-embedding-3-small", "dimensions": 1024,
                         "input": [f"steady {unique()} {i}" for i in range(256)]})
    headers = {**AUTH, "content-type": "application/json"}
    first = httpx.post(quick.url + "/embeddings", content=body, headers=headers, timeout=60)
    assert first.status_code == 200 and len(first.content) > 5_000_000
    before = refused(quick, "response_send_timeout")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    sock.settimeout(15)
    with sock:
        sock.connect(("127.0.0.1", quick.port))
        sock.sendall(b"POST /embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + KEY_LINE
                     + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while piece := sock.recv(1 << 16):
            data += piece
            time.sleep(0.06)
    status, headers_, rest = parse(data)
    assert status == 200 and headers_["x-reprise-cache"] == "hit"
    assert orjson.loads(rest)["data"] == first.json()["data"]
    assert refused(quick, "response_send_timeout") == before


def rss_mb(gw: GatewayProcess) -> float:
    assert gw.proc is not None
    with open(f"/proc/{gw.proc.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_large_hits_for_non_readers_stay_within_the_unsent_budget(budget: GatewayProcess) -> None:
    """Ten clients ask for a ~15 MB cached embeddings answer and read none of it.

    Was: each held its own copy for as long as it stayed connected (20 of a 120 MiB answer:
    220 MB -> 2.6 GB). Now what waits for them is within ``max_unsent_response_mb`` (16 MB):
    the connection stalled longest is aborted.
    """
    request = large_hit(budget, dimensions=3072)
    before, rss_before = refused(budget, "max_unsent_response"), rss_mb(budget)
    with ExitStack() as stack:
        for _ in range(10):
            stack.enter_context(non_reader(budget, request))
            time.sleep(0.2)
        wait_for(lambda: refused(budget, "max_unsent_response") >= before + 7)
        grown = rss_mb(budget) - rss_before
        assert grown < 4 * BUDGET_MB, f"RSS grew {grown:.0f} MB"  # unbounded: ~120 MB
        assert_served(budget)


def test_deep_pipelining_is_refused_without_queueing_every_request(quick: GatewayProcess) -> None:
    """Found from outside: one 256 KiB write of 9,362 tiny pipelined requests became 9,362 queued
    request cycles (~22 MB a connection, no key needed); now at most MAX_PIPELINED wait."""
    from reprise.server.protocol import MAX_PIPELINED

    before, rss_before = refused(quick, "too_many_pipelined_requests"), rss_mb(quick)
    request = b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n"
    with ExitStack() as stack:
        socks = []
        for _ in range(20):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", quick.port), timeout=15))
            sock.sendall(request * 5000)  # ~220 KB each, never read until the end
            socks.append(sock)
        wait_for(lambda: refused(quick, "too_many_pipelined_requests") >= before + 20)
        assert rss_mb(quick) - rss_before < 100  # unbounded: ~20 MB a connection
        assert_served(quick)
        # What was answered before the close (a reset may discard it: the rest of its input was unread).
        assert read_all(socks[0]).count(b"HTTP/1.1 200") <= MAX_PIPELINED + 1


def test_an_aborted_connection_with_pipelined_requests_raises_nothing(quick: GatewayProcess) -> None:
    """Found from outside: with requests pipelined behind a large answer, the abort after the send
    timeout woke the running cycle, which wrote to the aborted transport (a traceback and a 500)."""
    request = large_hit(quick)
    before = refused(quick, "response_send_timeout")
    with non_reader(quick, request * 3):
        wait_for(lambda: refused(quick, "response_send_timeout") == before + 1)
        time.sleep(0.5)
    assert "unable to perform operation" not in quick.log and "Traceback" not in quick.log
