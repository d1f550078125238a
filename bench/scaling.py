"""Hits at scale (issue 15): ``python bench/scaling.py``.

For each cache (``local``, ``disk``, ``redis``) and each worker count (1, 2), one
``reprise serve --workers N`` is started and filled through HTTP (each prompt asked once:
a miss answered by a ``mock_response`` model, so no provider is involved) with

* 100,000 prompts whose answers are ~1 KB (model ``small``), and
* 1,000 prompts whose answers are ~100 KB (model ``large``).

Then wrk sends uniformly random prompts over a working set, all hits:

* ``1k x 1KB``: the first 1,000 small prompts;
* ``100k x 1KB``: all 100,000 small prompts;
* ``1k x 100KB``: the 1,000 large prompts.

Every figure is divided by the trivial app (``bench/trivial_sized.py``: uvicorn with Reprise's
options, the same worker count, answering the same number of bytes) measured in the same round.
All gateways and baselines run at once and are measured in turn, round after round, so drift
of a shared machine spreads over all of them. ``disk`` and ``redis`` gateways with 1 and 2
workers share one store (filled once); ``local`` is filled per gateway.

Also reported: bytes the gateway's processes wrote to storage per hit (``write_bytes`` of
``/proc/PID/io``: real block writes; a ``/dev/shm`` tier writes to memory and shows 0), and
resident memory after the fill. Targets: ``disk`` hit throughput with 100k random entries at
least 0.8x that with 1k (issue 15 item 2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import targets
from bench.load import BenchError, Endpoint, WrkResult, parse_wrk, require_wrk
from bench.procs import ProcessSet, Server, _descendants, free_port, tree_rss_mb, wait_ready
from bench.run_redis import start_redis

RANDOM_LUA = Path(__file__).with_name("random_post.lua")
SMALL, LARGE = 1_000, 100_000  # answer sizes, bytes
CELLS = [("1k x 1KB", "small", 1_000), ("100k x 1KB", "small", 100_000), ("1k x 100KB", "large", 1_000)]
CONFIG = """\
model_list:
  - model_name: small
    litellm_params: {{model: openai/small, mock_response: {small}}}
  - model_name: large
    litellm_params: {{model: openai/large, mock_response: {large}}}
litellm_settings:
  cache: true
  cache_params: {cache_params}
general_settings:
  master_key: {master_key}
  request_logs: false
"""


@dataclass
class Target:
    name: str
    server: Server
    workers: int
    cache: str | None = None  # None: the trivial baseline
    answer_bytes: dict[str, int] = field(default_factory=dict)
    rss_mb: float = 0.0
    pss_mb: float = 0.0  # proportional: a page shared by the workers counts once in total
    shm_mb: float = 0.0
    results: dict[str, list[WrkResult]] = field(default_factory=dict)
    written: dict[str, list[float]] = field(default_factory=dict)  # bytes written per request

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.server.host, self.server.port, headers=dict(targets.AUTH))


def _text(size: int) -> str:
    words = "the cache answers this request from memory without asking the provider again "
    return json.dumps((words * (size // len(words) + 1))[: size - 330])


def start_gateway(procs: ProcessSet, workdir: Path, cache: str, params: dict[str, object], workers: int) -> Target:
    name = f"{cache} w{workers}"
    config = workdir / f"config-{cache}-{workers}.yaml"
    config.write_text(CONFIG.format(small=_text(SMALL), large=_text(LARGE), cache_params=json.dumps(params),
                                    master_key=targets.MASTER_KEY))
    port = free_port()
    cmd = [*targets.reprise_command(), "serve", "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--workers", str(workers)]
    pythonpath = os.pathsep.join(filter(None, [str(targets.REPO / "src"), os.environ.get("PYTHONPATH")]))
    server = procs.spawn(name.replace(" ", "-"), cmd, port,
                         env=targets._clean_env(PYTHONPATH=pythonpath), cwd=targets.REPO)
    wait_ready(server, [("/health/readiness", targets.AUTH)], 60)
    time.sleep(1.0 if workers > 1 else 0)  # every worker up, not only the first to answer
    return Target(name, server, workers, cache)


def start_trivial(procs: ProcessSet, size: int, workers: int) -> Target:
    name = f"trivial {size // 1000}KB w{workers}"
    port = free_port()
    options = [o if o != "1" else str(workers) for o in targets.UVICORN_OPTIONS]
    cmd = [sys.executable, "-m", "uvicorn", "trivial_sized:app", "--app-dir", str(targets.REPO / "bench"),
           "--host", "127.0.0.1", "--port", str(port), *options]
    server = procs.spawn(name.replace(" ", "-"), cmd, port,
                         env=targets._clean_env(TRIVIAL_ANSWER_BYTES=str(size)))
    wait_ready(server, [("/", {})], 30)
    time.sleep(1.0 if workers > 1 else 0)
    return Target(name, server, workers)


def wrk(target: Target, model: str, keys: int, duration: float, connections: int,
        threads: int) -> WrkResult:
    env = {**os.environ, "WRK_MODEL": model, "WRK_KEYS": str(keys),
           "WRK_HEADERS": json.dumps(dict(targets.AUTH))}
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
           "-s", str(RANDOM_LUA), target.endpoint.url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    return parse_wrk(out)


def fill(target: Target, keys: int, model: str, threads: int = 16) -> None:
    """Ask prompts 1..keys once each (misses, stored), over ``threads`` kept-alive connections."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    def part(start: int) -> None:
        conn = http.client.HTTPConnection(target.server.host, target.server.port, timeout=60)
        headers = {"Content-Type": "application/json", **targets.AUTH}
        try:
            for i in range(start, keys + 1, threads):
                body = json.dumps({"model": model, "messages": [{"role": "user", "content": f"q{i}"}]})
                conn.request("POST", "/chat/completions", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise BenchError(f"{target.name}: filling {model}: HTTP {response.status}")
        finally:
            conn.close()

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        for done in [pool.submit(part, start) for start in range(1, threads + 1)]:
            done.result()
    print(f"  filled {target.name} {model}: {keys:,} prompts in {time.monotonic() - started:.0f} s", flush=True)


def check_hits(target: Target, model: str, keys: int) -> int:
    """The answer size of ``model``'s hits; raises if a sampled prompt is not a hit."""
    import http.client

    size = 0
    conn = http.client.HTTPConnection(target.server.host, target.server.port, timeout=30)
    try:
        for i in (1, keys // 2, keys):
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": f"q{i}"}]})
            conn.request("POST", "/chat/completions", body, {"Content-Type": "application/json", **targets.AUTH})
            response = conn.getresponse()
            size = len(response.read())
            if response.status != 200 or response.getheader("x-reprise-cache") != "hit":
                raise BenchError(f"{target.name}: q{i} of {model} is not a hit after the fill")
    finally:
        conn.close()
    return size


def tree_pss_mb(pid: int) -> float:
    total_kb = 0
    for member in _descendants(pid) | {pid}:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def shared_tier_mb(pid: int) -> float:
    """Bytes of the ``--workers N`` shared tier (tmpfs: memory) of the server ``pid``."""
    return sum(f.stat().st_size for d in Path("/dev/shm").glob(f"reprise-workers-{pid}-*")
               for f in d.iterdir()) / 2**20


def written_bytes(pid: int) -> int:
    total = 0
    for member in _descendants(pid) | {pid}:
        try:
            for line in Path(f"/proc/{member}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def measure(target: Target, cell: str, model: str, keys: int, args: argparse.Namespace) -> None:
    before = written_bytes(target.server.pid)
    result = wrk(target, model, keys, args.duration, args.connections, args.threads)
    after = written_bytes(target.server.pid)
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"{target.name} {cell}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    target.results.setdefault(cell, []).append(result)
    target.written.setdefault(cell, []).append((after - before) / max(1, result.requests))


def median_rps(target: Target, cell: str) -> float:
    return statistics.median(r.requests_per_s for r in target.results[cell])


def report(gateways: list[Target], baselines: dict[tuple[int, str], Target], args: argparse.Namespace) -> int:
    lines = [f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s per cell, {args.rounds} rounds, "
             "median req/s; ratio = Reprise / trivial app with the same workers and answer bytes, same rounds", "",
             "| cache | workers | cell | hits/s | trivial/s | ratio | rounds (hits/s) | bytes written/hit |",
             "|---|---|---|---|---|---|---|---|"]
    for (_, model), trivial in sorted(baselines.items()):
        for cell, rs in trivial.results.items():
            size = "1KB" if model == "small" else "100KB"
            lines.append(f"| trivial | {trivial.workers} | {size} answer | - | {median_rps(trivial, cell):,.0f} | - | "
                         f"{', '.join(f'{r.requests_per_s:,.0f}' for r in rs)} | - |")
    for gw in gateways:
        for cell, model, _ in CELLS:
            base = baselines[(gw.workers, model)]
            rps, brps = median_rps(gw, cell), median_rps(base, "any")
            lines.append(f"| {gw.cache} | {gw.workers} | {cell} | {rps:,.0f} | {brps:,.0f} | {rps / brps:.2f}x | "
                         f"{', '.join(f'{r.requests_per_s:,.0f}' for r in gw.results[cell])} | "
                         f"{statistics.median(gw.written[cell]):,.0f} |")
    lines += ["", "| gateway | memory after fill, all processes: RSS / PSS (MB) | shared tier on /dev/shm (MB) |",
              "|---|---|---|"]
    lines += [f"| {gw.name} | {gw.rss_mb:.0f} / {gw.pss_mb:.0f} | {gw.shm_mb:.0f} |" for gw in gateways]
    failed = False
    lines.append("")
    for gw in gateways:
        if gw.cache == "disk":
            ratio = median_rps(gw, CELLS[1][0]) / median_rps(gw, "1k x 1KB")
            ok = ratio >= 0.8
            failed |= not ok
            lines.append(f"- disk, {gw.workers} worker(s): hits/s 100k / 1k entries = {ratio:.2f} (target >= 0.80) "
                         f"{'PASS' if ok else 'FAIL'}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--caches", default="local,disk,redis")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--duration", type=float, default=5.0, help="wrk seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--large-set", type=int, default=100_000, help="prompts of the large working set")
    args = parser.parse_args()
    require_wrk()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its servers
    CELLS[1] = (f"{args.large_set // 1000}k x 1KB", "small", args.large_set)
    caches = args.caches.split(",")
    worker_counts = [int(w) for w in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="reprise-scaling-"))
    procs = ProcessSet(workdir)
    try:
        redis_port = start_redis(procs, workdir) if "redis" in caches else 0
        params = {"local": {"type": "local", "ttl": 36000},
                  "disk": {"type": "disk", "ttl": 36000, "disk_cache_dir": str(workdir / "disk")},
                  "redis": {"type": "redis", "ttl": 36000, "host": "127.0.0.1", "port": redis_port}}
        baselines = {(w, model): start_trivial(procs, size, w)
                     for w in worker_counts for model, size in (("small", SMALL), ("large", LARGE))}
        gateways: list[Target] = []
        for cache in caches:
            for workers in worker_counts:
                gw = start_gateway(procs, workdir, cache, params[cache], workers)
                if cache == "local" or workers == worker_counts[0]:  # shared stores are filled once
                    fill(gw, args.large_set, "small")
                    fill(gw, 1_000, "large")
                gw.answer_bytes = {"small": check_hits(gw, "small", args.large_set),
                                   "large": check_hits(gw, "large", 1_000)}
                gw.rss_mb = tree_rss_mb(gw.server.pid)
                gw.pss_mb, gw.shm_mb = tree_pss_mb(gw.server.pid), shared_tier_mb(gw.server.pid)
                gateways.append(gw)
        print("answer bytes:", {gw.name: gw.answer_bytes for gw in gateways}, flush=True)
        for round_no in range(args.rounds):
            for (_, model), trivial in baselines.items():
                trivial.results.setdefault("any", [])
                result = wrk(trivial, model, 1, args.duration, args.connections, args.threads)
                trivial.results["any"].append(result)
            for gw in gateways:
                for cell, model, keys in CELLS:
                    measure(gw, cell, model, keys, args)
            print(f"  round {round_no + 1}/{args.rounds} done", flush=True)
        return report(gateways, baselines, args)
    finally:
        procs.close()


if __name__ == "__main__":
    sys.exit(main())
