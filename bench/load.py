"""Load generation: a keep-alive latency client and a wrapper around ``wrk``.

Why two tools: throughput needs a load generator that is not itself the
bottleneck (``wrk``, written in C); latency at concurrency 1 needs exact
per-request timings with the connection kept open, which a raw-socket loop
(:class:`KeepAliveClient`) gives with a small and constant client overhead
(the same for every target, so ratios are fair).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

POST_LUA = Path(__file__).with_name("post.lua")


class BenchError(RuntimeError):
    """A target answered something that makes its numbers meaningless."""


@dataclass(frozen=True)
class Endpoint:
    """Where to send chat requests for one target, with its auth header."""

    name: str
    host: str
    port: int
    path: str = "/v1/chat/completions"
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Latency:
    """Percentiles of one series of requests, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> Latency:
        ms = sorted(s * 1000 for s in samples)
        return cls(len(ms), percentile(ms, 50), percentile(ms, 90), percentile(ms, 99), statistics.fmean(ms))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


class KeepAliveClient:
    """One HTTP/1.1 connection reused for every request, reopened if the server drops it.

    A raw socket and a request head built once: ``http.client`` spent ~0.1 ms of its own per
    request (header formatting, an ``email`` parser for the answer's head; measured against the
    trivial app: p50 0.224 ms through it, 0.117 ms through this), about a cache hit's whole
    server time, so a latency measured through it was half the client's. The
    answer is read whole (``content-length`` or chunked) and its status returned, so a
    target that answers wrongly still fails the run.
    """

    def __init__(self, endpoint: Endpoint, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        headers = {"Host": f"{endpoint.host}:{endpoint.port}", "Content-Type": "application/json",
                   **endpoint.headers}
        lines = [f"POST {endpoint.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")

    def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self._sock is None:
                self._sock = socket.create_connection((self.endpoint.host, self.endpoint.port), timeout=self.timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._buffer = b""
            try:
                self._sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
                return self._read_answer()
            except ConnectionError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _read_answer(self) -> tuple[int, bytes]:
        head = self._read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        if b"content-length" in fields:
            body = self._read_exactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while size := int(self._read_until(b"\r\n").split(b";")[0], 16):
                parts.append(self._read_exactly(size))
                self._read_exactly(2)
            self._read_until(b"\r\n")  # no trailers are sent: the empty line after the last chunk
            body = b"".join(parts)
        else:
            raise BenchError(f"{self.endpoint.name}: an answer without content-length or chunked framing")
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def _fill(self) -> None:
        assert self._sock is not None
        piece = self._sock.recv(262144)
        if not piece:
            raise ConnectionResetError("the server closed the connection")
        self._buffer += piece

    def _read_until(self, marker: bytes) -> bytes:
        while (at := self._buffer.find(marker)) < 0:
            self._fill()
        found, self._buffer = self._buffer[:at], self._buffer[at + len(marker):]
        return found

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post_ok(client: KeepAliveClient, body: bytes) -> bytes:
    status, data = client.post(body)
    if status != 200:
        raise BenchError(f"{client.endpoint.name}: HTTP {status}: {data[:300]!r}")
    return data


def measure_latency(endpoint: Endpoint, body: bytes, requests: int, warmup: int = 50) -> Latency:
    """Sequential requests (concurrency 1) of the same ``body`` over one connection."""
    samples = []
    with KeepAliveClient(endpoint) as client:
        for _ in range(warmup):
            post_ok(client, body)
        for _ in range(requests):
            started = time.perf_counter()
            post_ok(client, body)
            samples.append(time.perf_counter() - started)
    return Latency.from_seconds(samples)


def measure_interleaved(
    endpoints: Sequence[Endpoint], make_body: Callable[[int], bytes], requests: int
) -> dict[str, Latency]:
    """``requests`` rounds; in each, every endpoint gets the same fresh body in turn.

    Interleaving spreads any drift of the machine (or of the upstream's timer)
    evenly over the targets, so the difference of their medians is the overhead.
    """
    samples: dict[str, list[float]] = {e.name: [] for e in endpoints}
    clients = [KeepAliveClient(e) for e in endpoints]
    try:
        for i in range(requests):
            body = make_body(i)
            for client in clients:
                started = time.perf_counter()
                post_ok(client, body)
                samples[client.endpoint.name].append(time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()
    return {name: Latency.from_seconds(values) for name, values in samples.items()}


def answer_text(data: bytes) -> str:
    """The assistant text of a chat answer, JSON or SSE (to tell a hit from a miss)."""
    if data.lstrip().startswith(b"data:"):
        parts = []
        for line in data.decode().split("\n"):
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[len("data: ") :]).get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
        return "".join(parts)
    body = json.loads(data)
    return str(body["choices"][0]["message"]["content"])


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float


def require_wrk() -> None:
    """Stop before starting anything when ``wrk`` is missing, saying how to get it."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (Debian: apt-get install -y wrk)")


def run_wrk(
    endpoint: Endpoint,
    body: bytes,
    duration_s: float,
    connections: int,
    threads: int,
) -> WrkResult:
    """``wrk`` POSTing ``body`` with the endpoint's headers (see ``post.lua``)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body)
        body_file = f.name
    env = {**os.environ, "WRK_BODY_FILE": body_file, "WRK_HEADERS": json.dumps(dict(endpoint.headers))}
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(POST_LUA),
        endpoint.url,
    ]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=duration_s + 60).stdout
    finally:
        os.unlink(body_file)
    return parse_wrk(out)


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's summary, plus the ``WRK_JSON`` line our ``post.lua`` prints in ``done``."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise BenchError(f"could not parse wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    extra: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            extra = json.loads(line[len("WRK_JSON ") :])
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        requests=int(extra.get("requests", 0)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in socket.groups()) if socket else 0,
        p50_ms=extra.get("p50_us", float("nan")) / 1000,
        p99_ms=extra.get("p99_us", float("nan")) / 1000,
    )
