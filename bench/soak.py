"""Sustained mixed load against one gateway: does anything grow or fail over minutes?

    python bench/soak.py                 # ~3 minutes
    python bench/soak.py --duration 30   # a quick look

Starts the stub upstream (small delay) and ``reprise serve`` with a bounded ``local``
cache (``max_entries: 2000``), both on 127.0.0.1, then runs ``--clients`` keep-alive
clients in threads, each looping over a mix: repeated prompts (hits), unique prompts
(misses, which also churn the LRU), streamed requests, and embeddings. It samples the
gateway's RSS, open file descriptors (``/proc/PID/fd``) and asyncio task count (the
``/health/readiness`` ``debug`` field, when the gateway has one; else n/a) at start, middle and end, and prints
a Markdown table. Any non-200 or malformed answer counts as an error (expected: 0).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procs import ProcessSet, free_port, tree_rss_mb, wait_ready  # noqa: E402

MASTER = "sk-soak-master-key-0"
HEADERS = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}


def config(stub_url: str) -> dict[str, Any]:
    models = [{"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": stub_url, "api_key": "sk-up",
                                                   "timeout": 10}}
              for m in ("gpt-4o", "text-embedding-3-small")]
    return {"model_list": models, "general_settings": {"master_key": MASTER},
            "litellm_settings": {"cache": True, "cache_params": {"type": "local", "max_entries": 2000}}}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"hit": 0, "miss": 0, "stream": 0, "embedding": 0}
        self.errors: list[str] = []

    def add(self, kind: str, error: str | None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if error is not None and len(self.errors) < 1000:
                self.errors.append(f"{kind}: {error}")


def one_request(conn: http.client.HTTPConnection, rng: random.Random, worker: int, i: int) -> tuple[str, str | None]:
    roll = rng.random()
    if roll < 0.5:
        kind, path = "hit", "/chat/completions"
        prompt = f"hot {rng.randrange(50)}"
        body: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]}
    elif roll < 0.75:
        kind, path = "miss", "/chat/completions"
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": f"cold {worker} {i} {time.time_ns()}"}]}
    elif roll < 0.9:
        kind, path = "stream", "/chat/completions"
        body = {"model": "gpt-4o", "stream": True,
                "messages": [{"role": "user", "content": f"stream {rng.randrange(400)}"}]}
    else:
        kind, path = "embedding", "/embeddings"
        body = {"model": "text-embedding-3-small", "input": [f"e {rng.randrange(3000)}" for _ in range(3)]}
    conn.request("POST", path, json.dumps(body), HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        return kind, f"HTTP {resp.status} {data[:120]!r}"
    if kind == "stream":
        ok = data.rstrip().endswith(b"data: [DONE]")
    else:
        ok = bool(json.loads(data).get("choices" if path == "/chat/completions" else "data"))
    return kind, None if ok else f"malformed answer {data[:120]!r}"


def client_loop(port: int, worker: int, stop_at: float, tally: Tally) -> None:
    rng = random.Random(worker)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while time.monotonic() < stop_at:
        try:
            kind, error = one_request(conn, rng, worker, i)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            kind, error = "miss", f"{type(exc).__name__}: {exc}"
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        tally.add(kind, error)
        i += 1
    conn.close()


def sample(pid: int, port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers=HEADERS)  # /metrics needs the master key by default
    metrics = conn.getresponse().read().decode()
    conn.close()
    tasks = next((int(float(line.split()[-1])) for line in metrics.splitlines()
                  if line.startswith("reprise_event_loop_tasks ")), "n/a")
    return {"rss_mb": round(tree_rss_mb(pid), 1), "fds": len(os.listdir(f"/proc/{pid}/fd")), "tasks": tasks}


def gateway_pid(server_pid: int) -> int:
    """``reprise serve`` with one worker runs uvicorn in the spawned process itself."""
    return server_pid


def run(duration: float, clients: int, delay_ms: float) -> int:
    root = Path(__file__).resolve().parents[1]
    workdir = Path(tempfile.mkdtemp(prefix="reprise-soak-"))
    procs = ProcessSet(workdir)
    try:
        stub_port, gw_port = free_port(), free_port()
        stub = procs.spawn("stub", [sys.executable, str(root / "tests/support/stub_upstream.py"), "--port",
                                    str(stub_port), "--delay-ms", str(delay_ms)], stub_port)
        wait_ready(stub, [("/_stats", {})], timeout=30)
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config(f"http://127.0.0.1:{stub_port}/v1")))
        gw = procs.spawn("reprise", [sys.executable, "-m", "reprise.cli.main", "serve", "--config", str(config_path),
                                     "--host", "127.0.0.1", "--port", str(gw_port), "--log-level", "warning"], gw_port)
        wait_ready(gw, [("/health/readiness", {})], timeout=30)
        pid = gateway_pid(gw.pid)
        tally = Tally()
        started = time.monotonic()
        threads = [threading.Thread(target=client_loop, args=(gw_port, w, started + duration, tally), daemon=True)
                   for w in range(clients)]
        samples = {"start": sample(pid, gw_port)}
        for t in threads:
            t.start()
        time.sleep(duration / 2)
        samples["middle"] = sample(pid, gw_port)
        for t in threads:
            t.join(timeout=duration + 60)
        hung = sum(t.is_alive() for t in threads)
        time.sleep(1.0)  # let finished connections close
        samples["end"] = sample(pid, gw_port)
        elapsed = time.monotonic() - started
        report(duration, elapsed, clients, delay_ms, tally, samples, hung)
        return 1 if tally.errors or hung else 0
    finally:
        procs.close()


def report(duration: float, elapsed: float, clients: int, delay_ms: float, tally: Tally,
           samples: dict[str, dict[str, Any]], hung: int) -> None:
    total = sum(tally.counts.values())
    print(f"\n`python bench/soak.py --duration {duration:g} --clients {clients} --delay-ms {delay_ms:g}`\n")
    print("| metric | value |\n|---|---|")
    print(f"| duration (s) | {elapsed:.0f} |")
    print(f"| requests | {total:,} ({total / elapsed:,.0f}/s) |")
    for kind, count in tally.counts.items():
        print(f"| {kind} requests | {count:,} |")
    print(f"| errors | {len(tally.errors)} |")
    print(f"| clients still running at the end (hangs) | {hung} |")
    for name in ("rss_mb", "fds", "tasks"):
        label = {"rss_mb": "RSS (MB)", "fds": "open fds", "tasks": "asyncio tasks"}[name]
        row = " / ".join(str(samples[p][name]) for p in ("start", "middle", "end"))
        print(f"| {label} start / middle / end | {row} |")
    for error in tally.errors[:10]:
        print(f"\nerror: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="stub upstream delay per answer")
    args = parser.parse_args()
    sys.exit(run(args.duration, args.clients, args.delay_ms))


if __name__ == "__main__":
    main()
