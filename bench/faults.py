"""Fault figures: a bounded loop of requests through a real gateway under each fault.

    python bench/faults.py              # --requests 20 per fault
    python bench/faults.py --requests 50

Everything runs on 127.0.0.1: the stub upstream (faults chosen by model name), a
``reprise serve`` with a ``local`` cache, a second stub that is killed and restarted, and
a gateway with a ``disk`` cache that is SIGKILLed under load and restarted. For each fault
the table counts: requests sent; failed as expected (the provider's error passed through,
504, 502, a cut stream passed on); unexpected failures (a 5xx made by Reprise itself, a
hang past the client timeout, a 200 that should not be); and wrong answers cached, checked
by asking again and looking for a hit (or, after a restart, a hit whose text is not the
prompt's own answer). The numbers should read N / N / 0 / 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.server.conftest import AUTH, GatewayProcess, gateway_config  # noqa: E402
from tests.support.stub_upstream import StubUpstream  # noqa: E402

from reprise.backends.disk import FILENAME  # noqa: E402

TIMEOUT = 10.0


@dataclass
class Row:
    fault: str
    sent: int = 0
    expected: int = 0
    unexpected: int = 0
    wrong_cached: int = 0
    note: str = ""


def chat(prompt: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def is_own_500(r: httpx.Response) -> bool:
    return r.status_code == 500 and b'"internal error"' in r.content


def post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response | None:
    """None when the request failed at the transport level (a cut passed on, or a hang)."""
    try:
        return client.post("/chat/completions", json=body)
    except httpx.TimeoutException:
        raise
    except httpx.TransportError:
        return None


def cached_hit(client: httpx.Client, body: dict[str, Any]) -> bool:
    r = client.post("/chat/completions", json={**body, "stream": False, "model": body["model"]})
    return r.headers.get("x-reprise-cache") == "hit"


def run_errors(client: httpx.Client, row: Row, n: int, model: str, status: int, stream: bool) -> Row:
    for i in range(n):
        body = chat(f"{row.fault} {i} {time.time_ns()}", model=model, stream=stream)
        row.sent += 1
        try:
            r = post(client, body)
        except httpx.TimeoutException:
            row.unexpected += 1
            continue
        if r is None:  # a cut stream is passed on to the client as a cut
            row.expected += 1
        elif is_own_500(r):
            row.unexpected += 1
        elif r.status_code == status or (stream and r.status_code == 200 and status == 200):
            row.expected += 1
        else:
            row.unexpected += 1
        if cached_hit(client, body):
            row.wrong_cached += 1
    return row


def client_abort(gw: GatewayProcess, stub: StubUpstream, client: httpx.Client, n: int) -> Row:
    row = Row("client abort mid-stream")
    stub.set_delay(300)
    try:
        for i in range(n):
            body = chat(f"abort {i} {time.time_ns()}", stream=True)
            payload = orjson.dumps(body)
            head = (f"POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH['Authorization']}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(head + payload)
                time.sleep(0.05)
            row.sent += 1
            row.expected += 1
            time.sleep(0.4)  # the provider answers after the client left
            if cached_hit(client, body):
                row.wrong_cached += 1
    finally:
        stub.set_delay(0)
    return row


def upstream_down_then_back(make: Callable[[dict[str, Any]], GatewayProcess], n: int) -> Row:
    row = Row("upstream killed, then back")
    with StubUpstream() as own:
        gw = make(gateway_config(own.url))
        assert own.pid is not None
        os.kill(own.pid, signal.SIGKILL)
        own.stop()
        with httpx.Client(base_url=gw.url, headers=AUTH, timeout=TIMEOUT) as client:
            prompts = [f"down {i} {time.time_ns()}" for i in range(n)]
            for prompt in prompts:
                row.sent += 1
                r = post(client, chat(prompt))
                row.expected += int(r is not None and r.status_code == 502)
                row.unexpected += int(r is None or r.status_code != 502)
            own.start()
            for prompt in prompts:
                row.sent += 1
                r = post(client, chat(prompt))
                ok = r is not None and r.status_code == 200 and r.headers.get("x-reprise-cache") == "miss"
                row.expected += int(ok)  # recovered: fresh answers, nothing stored from the outage
                row.unexpected += int(not ok)
                row.wrong_cached += int(r is not None and r.headers.get("x-reprise-cache") == "hit")
        row.note = f"{n} x 502 while down, then {n} fresh 200s without restarting the gateway"
    return row


def _load(url: str, t: int, answers: dict[str, str], stop: threading.Event) -> None:
    """Unique prompts (each a disk write) until ``stop`` or the gateway dies."""
    with httpx.Client(base_url=url, headers=AUTH, timeout=TIMEOUT) as client:
        for i in range(100_000):
            if stop.is_set():
                return
            prompt = f"kill {t} {i} {time.time_ns()}"
            try:
                r = client.post("/chat/completions", json=chat(prompt))
            except httpx.TransportError:
                return
            if r.status_code == 200:
                answers[prompt] = r.json()["choices"][0]["message"]["content"]


def disk_kill(make: Callable[[dict[str, Any]], GatewayProcess], stub: StubUpstream, workdir: Path) -> Row:
    row = Row("gateway kill -9 mid disk write")
    config = gateway_config(stub.url, {"type": "disk", "disk_cache_dir": str(workdir / "disk")})
    gw = make(config)
    answers: dict[str, str] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(gw.url, t, answers, stop)) for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    gw.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=TIMEOUT)
    db = sqlite3.connect(workdir / "disk" / FILENAME)
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    again = make(config)
    hits = 0
    with httpx.Client(base_url=again.url, headers=AUTH, timeout=TIMEOUT) as client:
        for prompt, text in list(answers.items())[:300]:  # bounded: a sample of what was answered
            r = client.post("/chat/completions", json=chat(prompt))
            row.sent += 1
            if r.status_code != 200:
                row.unexpected += 1
                continue
            row.expected += 1
            if r.headers.get("x-reprise-cache") == "hit":
                hits += 1
                row.wrong_cached += int(r.json()["choices"][0]["message"]["content"] != text)
    row.unexpected += int(integrity != "ok")
    row.note = (f"{len(answers)} answers before the kill, {row.sent} asked again; integrity_check={integrity}; "
                f"{hits} hits after restart")
    return row


def run(n: int) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="reprise-faults-"))
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any]) -> GatewayProcess:
        gw = GatewayProcess(config, workdir).start()
        started.append(gw)
        return gw

    rows: list[Row] = []
    with StubUpstream() as stub:
        try:
            config = gateway_config(stub.url)
            for entry in config["model_list"]:
                if entry["model_name"] == "slow":
                    entry["litellm_params"]["timeout"] = 0.5
            gw = make(config)
            with httpx.Client(base_url=gw.url, headers=AUTH, timeout=TIMEOUT) as client:
                rows.append(run_errors(client, Row("upstream 500"), n, "fail-500", 500, False))
                rows.append(run_errors(client, Row("upstream 429"), n, "fail-429", 429, False))
                rows.append(run_errors(client, Row("upstream timeout (0.5 s)"), n, "slow", 504, False))
                rows.append(run_errors(client, Row("upstream cuts the stream"), n, "cut-stream", 200, True))
                rows.append(run_errors(client, Row("malformed SSE"), n, "bad-sse", 200, True))
                rows.append(run_errors(client, Row("stream ends without [DONE]"), n, "no-done", 200, True))
                rows.append(client_abort(gw, stub, client, n))
            rows.append(upstream_down_then_back(make, n))
            rows.append(disk_kill(make, stub, workdir))
        finally:
            for gw in started:
                gw.stop(signal.SIGKILL)
    for gw in started:
        if "Traceback" in gw.log:
            rows.append(Row("(gateway log)", note="a Traceback was logged", unexpected=1))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per fault")
    args = parser.parse_args()
    rows = run(args.requests)
    print(f"\n`python bench/faults.py --requests {args.requests}`\n")
    print("| fault | sent | failed as expected | unexpected failures | wrong answers cached | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.fault} | {r.sent} | {r.expected} | {r.unexpected} | {r.wrong_cached} | {r.note} |")
    sys.exit(1 if any(r.unexpected or r.wrong_cached for r in rows) else 0)


if __name__ == "__main__":
    main()
