"""One command for the Redis targets: ``python bench/run_redis.py``.

Starts a local ``redis-server`` and the stub upstream, then, one after another,
Reprise on ``type: redis`` (no local tier), Reprise on ``type: redis`` with its
local tier, and LiteLLM's proxy on ``type: redis``, all on the same Redis and the
same LiteLLM-format config. For each: checks that a repeated request is a hit,
measures hit latency at concurrency 1 and hit throughput with wrk, and prints a
table with the ratios against LiteLLM measured in this same run.

Targets (issue 3): hit throughput >= 20x LiteLLM's on Redis; p50 hit latency at
c=1 <= 1.5 ms without the local tier. Exits 1 if one is missed.

It reuses the harness of ``bench/run.py`` (procs, load, targets): see bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.support.stub_upstream import StubUpstream

from bench import targets
from bench.load import (
    BenchError,
    KeepAliveClient,
    Latency,
    WrkResult,
    answer_text,
    measure_latency,
    post_ok,
    require_wrk,
    run_wrk,
)
from bench.procs import ProcessSet, Server, free_port, kill_group

PROMPT = "What is the capital of France? Answer in one word."
CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {api_base}
      api_key: sk-x
litellm_settings:
  cache: true
  cache_params:
    type: redis
    host: 127.0.0.1
    port: {redis_port}
    ttl: 600
{extra}general_settings:
  master_key: {master_key}
"""


@dataclass
class Row:
    name: str
    latency: Latency
    wrk: WrkResult


def body() -> bytes:
    import json

    return json.dumps({"model": targets.MODEL, "messages": [{"role": "user", "content": PROMPT}]}).encode()


def start_redis(procs: ProcessSet, workdir: Path) -> int:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found: apt-get install -y redis-server")
    port = free_port()
    procs.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(workdir)], port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def write_config(path: Path, api_base: str, redis_port: int, local_tier: bool) -> Path:
    extra = "    local_tier: {ttl: 5}\n" if local_tier else ""
    path.write_text(CONFIG.format(model=targets.MODEL, api_base=api_base, redis_port=redis_port,
                                  extra=extra, master_key=targets.MASTER_KEY))
    return path


def measure(server: Server, args: argparse.Namespace) -> Row:
    endpoint = targets.endpoint_of(server)
    with KeepAliveClient(endpoint) as client:
        first, second = answer_text(post_ok(client, body())), answer_text(post_ok(client, body()))
    if first != second:
        raise BenchError(f"{server.name}: the second identical request was not a cache hit")
    latency = measure_latency(endpoint, body(), args.latency_requests)
    run_wrk(endpoint, body(), 2, args.connections, args.threads)  # warm-up
    wrk = run_wrk(endpoint, body(), args.duration, args.connections, args.threads)
    return Row(server.name, latency, wrk)


def report(rows: dict[str, Row]) -> int:
    lines = ["| target | hit req/s (wrk) | c=1 p50 / p99 (ms) | wrk p50 (ms) | non-2xx |", "|---|---|---|---|---|"]
    for row in rows.values():
        lines.append(f"| {row.name} | {row.wrk.requests_per_s:,.0f} | {row.latency.p50_ms:.3f} / "
                     f"{row.latency.p99_ms:.3f} | {row.wrk.p50_ms:.2f} | {row.wrk.non_2xx + row.wrk.socket_errors} |")
    failed = False
    base = rows.get("litellm-redis")
    lines.append("")
    for name in ("reprise-redis", "reprise-redis+local"):
        if base is not None and name in rows:
            ratio = rows[name].wrk.requests_per_s / base.wrk.requests_per_s
            ok = ratio >= 20 or name != "reprise-redis"
            failed |= not ok
            lines.append(f"- hit throughput {name} / litellm-redis: {ratio:.1f}x (target >= 20x)"
                         f"{'' if name != 'reprise-redis' else (' PASS' if ok else ' FAIL')}")
    if "reprise-redis" in rows:
        p50 = rows["reprise-redis"].latency.p50_ms
        failed |= p50 > 1.5
        lines.append(f"- hit latency p50 at c=1, reprise-redis: {p50:.3f} ms (target <= 1.5 ms) "
                     f"{'PASS' if p50 <= 1.5 else 'FAIL'}")
    print("\n".join(lines))
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-requests", type=int, default=2000)
    parser.add_argument("--litellm-python", type=Path, default=targets.DEFAULT_LITELLM_VENV / "bin" / "python")
    parser.add_argument("--skip-litellm", action="store_true")
    args = parser.parse_args()
    require_wrk()
    rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(prefix="reprise-bench-redis-") as tmp:
        workdir = Path(tmp)
        procs = ProcessSet(workdir)
        try:
            redis_port = start_redis(procs, workdir)
            with StubUpstream(delay_ms=300) as stub:
                for name, tier in (("reprise-redis", False), ("reprise-redis+local", True)):
                    config = write_config(workdir / f"{name}.yaml", stub.url, redis_port, tier)
                    server = targets.start_reprise(procs, config)
                    server.name = name
                    rows[name] = measure(server, args)
                    kill_group(server.proc)
                    print(f"{name}: done", flush=True)
                if not args.skip_litellm:
                    python = targets.ensure_litellm_venv(args.litellm_python)
                    config = write_config(workdir / "litellm.yaml", stub.url, redis_port, False)
                    server = targets.start_litellm(procs, python, config)
                    server.name = "litellm-redis"
                    rows["litellm-redis"] = measure(server, args)
                    print("litellm-redis: done", flush=True)
        finally:
            procs.close()
    return report(rows)


if __name__ == "__main__":
    sys.exit(main())
