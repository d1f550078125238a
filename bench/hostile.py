"""Hostile load: each attack against a real ``reprise serve``, and what a normal client saw meanwhile.

usage: python bench/hostile.py [--hold SECONDS] [SCENARIO ...]     (default: every scenario, 8 s each)

For each scenario a fresh gateway starts at ``ulimit -n 1024`` (so ``max_connections`` is 512) in
front of the stub provider (tests/support/stub_upstream.py). A normal client makes one cache-hit
request every 50 ms on a new connection (what a client arriving during the attack sees): first
for 2 s without an attack (the baseline, same run), then for ``--hold`` seconds under attack.
The attacker, like a real one, reopens every connection the gateway closes; where it has a
key, it is a tenant's (the normal client is another tenant). Printed: a Markdown
row per scenario (normal client before → during, the attacker's answers, the gateway's RSS).
These are the README's "Hostile load" figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.server.conftest import GatewayProcess, gateway_config  # noqa: E402
from tests.support.stub_upstream import StubUpstream  # noqa: E402

ATTACKER_KEY, CLIENT_KEY = "sk-hostile-attacker-key", "sk-hostile-normal-client"
KEY = b"Authorization: Bearer " + ATTACKER_KEY.encode() + b"\r\n"
"""The attacker's "valid key": a tenant's key, as any customer of the gateway holds one."""
TENANTS = [{"key": ATTACKER_KEY, "tenant": "attacker"}, {"key": CLIENT_KEY, "tenant": "normal"}]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def exchange(port: int, request: bytes, timeout: float = 10) -> int | str:
    """Send one request on a new connection; the status, or what went wrong."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(request)
            data = b""
            while piece := s.recv(65536):
                data += piece
        return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else "no answer"
    except OSError as exc:
        return type(exc).__name__


class Normal(threading.Thread):
    """A client making one cache-hit request every 50 ms, each on a new connection."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hostile-load hit"}]})
        self.request = (b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        + b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
                        + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body.encode())
        self.port, self.stop, self.results = port, threading.Event(), list[tuple[Any, float]]()

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.perf_counter()
            status = exchange(self.port, self.request)
            self.results.append((status, (time.perf_counter() - start) * 1000))
            time.sleep(0.05)

    def summary(self) -> str:
        ok = sorted(ms for status, ms in self.results if status == 200)
        bad = Counter(str(status) for status, _ in self.results if status != 200)
        if not ok:
            return f"0/{len(self.results)} served {dict(bad)}"
        at = lambda q: ok[min(len(ok) - 1, int(q * len(ok)))]  # noqa: E731
        other = f" ({', '.join(f'{n}× {s}' for s, n in bad.items())})" if bad else ""
        return f"{len(ok)}/{len(self.results)} served, p50 {at(0.5):.1f} ms, p99 {at(0.99):.0f} ms{other}"


Attack = Callable[[int, threading.Event, Counter[str]], None]


def holder(first: bytes, count: int, reopen: bool) -> Attack:
    """Hold ``count`` connections that sent ``first``; reopen any the gateway closes if ``reopen``."""

    def attack(port: int, stop: threading.Event, seen: Counter[str]) -> None:
        socks: list[socket.socket] = []
        for _ in range(count):
            _open(port, first, socks, seen)
        while not stop.is_set():
            time.sleep(0.2)
            for s in _answered(socks, seen):
                socks.remove(s)
                s.close()
                if reopen and not stop.is_set():
                    _open(port, first, socks, seen)
        for s in socks:
            s.close()

    return attack


def _open(port: int, first: bytes, socks: list[socket.socket], seen: Counter[str]) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        if first:
            s.send(first)
        socks.append(s)
    except OSError as exc:
        seen[type(exc).__name__] += 1


def _answered(socks: list[socket.socket], seen: Counter[str]) -> list[socket.socket]:
    """The connections the gateway answered or closed, counting what it said."""
    done = []
    for s in socks:
        try:
            data = s.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        seen[data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"] += 1
        done.append(s)
    return done


def senders(make_request: Callable[[], bytes], clients: int) -> Attack:
    """``clients`` threads sending a hostile request back to back."""

    def attack(port: int, stop: threading.Event, seen: Counter[str]) -> None:
        request = make_request()

        def loop() -> None:
            while not stop.is_set():
                seen[str(exchange(port, request, timeout=30))] += 1

        threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return attack


def big_header() -> bytes:
    return b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 << 20)


def body_request(body: bytes) -> bytes:
    return (b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + KEY
            + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def container_bomb() -> bytes:
    """8 MB of empty arrays (the costliest shape to parse: 2.7M objects) in a request that is then refused."""
    return body_request(b'{"x":[' + b"[]," * 2_700_000 + b"[]]}")


def deep_brackets() -> bytes:
    return body_request(b'{"model":"gpt-4o","x":' + b"[" * 8_000_000 + b"}")


SLOW_BODY = b"POST /chat/completions HTTP/1.1\r\nHost: x\r\n" + KEY + b"Content-Length: 1000\r\n\r\n{"

#: name → (what it does, the attack, general_settings for this run)
SCENARIOS: dict[str, tuple[str, Attack, dict[str, Any]]] = {
    "big-headers": ("8 clients each sending a 32 MB header, no key", senders(big_header, 8), {}),
    "slowloris": ("2,000 unfinished heads, no key",
                  holder(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n", 2000, True), {}),
    "idle": ("2,000 idle connections (nothing sent), no key", holder(b"", 2000, True), {}),
    "slow-bodies": ("200 partial bodies with a valid key (request_body_timeout: 5)",
                    holder(SLOW_BODY, 200, False), {"request_body_timeout": 5}),
    "anon-bodies": ("1,000 partial bodies without a key",
                    holder(b"POST /chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{",
                           1000, True), {}),
    "busy-cap": ("600 partial bodies with a valid key, more than max_connections (request_body_timeout: 5)",
                 holder(SLOW_BODY, 600, True), {"request_body_timeout": 5}),
    "container-bomb": ("2 clients sending 8 MB bodies of 2.7M empty arrays back to back, valid key",
                       senders(container_bomb, 2), {}),
    "deep-brackets": ("2 clients sending 8 MB of '[' back to back, valid key", senders(deep_brackets, 2), {}),
}


def run(name: str, hold: float) -> str:
    what, attack, general = SCENARIOS[name]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with StubUpstream() as stub, tempfile.TemporaryDirectory() as tmp:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # the gateway runs at ulimit -n 1024
        try:
            gateway = GatewayProcess(gateway_config(stub.url, virtual_keys=TENANTS, **general), Path(tmp),
                                     ["--log-level", "error"]).start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            assert gateway.proc is not None
            pid = gateway.proc.pid
            normal = Normal(gateway.port)
            normal.start()
            time.sleep(2)
            quiet = normal.summary()
            normal.results.clear()
            rss_quiet = rss_mb(pid)
            stop, seen = threading.Event(), Counter[str]()
            thread = threading.Thread(target=attack, args=(gateway.port, stop, seen), daemon=True)
            thread.start()
            peak, end = rss_quiet, time.monotonic() + hold
            while time.monotonic() < end:
                peak = max(peak, rss_mb(pid))
                time.sleep(0.1)
            during = normal.summary()
            stop.set()
            thread.join(timeout=40)
            normal.stop.set()
            normal.join(timeout=15)
            answers = ", ".join(f"{n}× {s}" for s, n in seen.most_common(4))
            return (f"| {what} | {quiet} | {during} | {answers} | {rss_quiet:.0f} → peak {peak:.0f} MB |")
        finally:
            gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], default=[])
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each attack lasts")
    args = parser.parse_args()
    print("| attack | normal client, no attack (same run) | normal client during the attack "
          "| the attacker's answers | gateway RSS |")
    print("|---|---|---|---|---|")
    for name in args.scenarios or SCENARIOS:
        print(run(name, args.hold), flush=True)


if __name__ == "__main__":
    main()
