"""One command for Reprise's performance targets: ``python bench/run.py``.

In one run on this machine it starts the stub upstream, a trivial ASGI app
(the ceiling), Reprise and LiteLLM's proxy (the thing to beat), measures each
the same way, prints a Markdown table of absolute numbers and of ratios
computed in this run, checks them against the targets, and writes the table to
``--out``. Every process it starts is killed at the end, whatever happens.

Why one run: absolute numbers move with the machine and its load; ratios between
targets measured minutes apart on the same machine are what can be compared
over time and across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):
    # Run as a script: import ``bench`` and ``tests`` from the repo root, and do not let
    # this folder's modules (load, report, ...) shadow anything else.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from tests.support.stub_upstream import StubUpstream

from bench import targets
from bench.load import (
    BenchError,
    Endpoint,
    KeepAliveClient,
    WrkResult,
    answer_text,
    measure_interleaved,
    measure_latency,
    post_ok,
    require_wrk,
    run_wrk,
)
from bench.procs import ProcessSet, Server, kill_group, tree_rss_mb
from bench.report import TargetResult, make_checks, render

HIT_PROMPT = "What is the capital of France? Answer in one word."


def chat_body(prompt: str, stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": targets.MODEL, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per target")
    p.add_argument("--rounds", type=int, default=2, help="wrk runs per target, best counts")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--latency-requests", type=int, default=2000, help="requests at c=1 for hits")
    p.add_argument("--stream-requests", type=int, default=500, help="requests at c=1 for stream hits")
    p.add_argument("--miss-requests", type=int, default=40, help="unique prompts per target")
    p.add_argument("--upstream-delay-ms", type=float, default=300.0, help="stub upstream delay")
    p.add_argument("--quick", action="store_true", help="short run for a smoke test")
    p.add_argument("--skip-litellm", action="store_true")
    p.add_argument("--skip-reprise", action="store_true")
    p.add_argument(
        "--litellm-python",
        type=Path,
        default=targets.DEFAULT_LITELLM_VENV / "bin" / "python",
        help="python of a venv with litellm[proxy] (created if missing)",
    )
    p.add_argument("--out", type=Path, default=targets.REPO / "bench" / "results.md")
    p.add_argument("--keep-logs", action="store_true", help="keep server logs and config")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.rounds = 1
        args.latency_requests = min(args.latency_requests, 300)
        args.stream_requests = min(args.stream_requests, 100)
        args.miss_requests = min(args.miss_requests, 10)
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    """Holds the run's processes and results; each measurement is one short method.

    Throughput is measured last, in rounds that go over every target in turn, and
    the best round counts: on a shared machine, outside load only ever lowers a
    round, and alternating targets spreads it over all of them.
    """

    def __init__(self, args: argparse.Namespace, procs: ProcessSet, stub: StubUpstream) -> None:
        self.args = args
        self.procs = procs
        self.stub = stub
        self.results: dict[str, TargetResult] = {}
        self.servers: dict[str, Server] = {}
        self.gateways: set[str] = set()
        self.nonce = uuid.uuid4().hex[:8]

    def add(self, name: str, start: Callable[[], Server], gateway: bool) -> None:
        """Start a target and measure it at concurrency 1; on failure record why and go on."""
        result = self.results.setdefault(name, TargetResult(name))
        log(f"starting {name}")
        with self.failures_recorded(name):
            server = start()
            self.servers[name] = server
            if gateway:
                self.gateways.add(name)
            result.startup_s = server.startup_s
            log(f"{name} ready in {server.startup_s:.2f} s (pid {server.pid})")
            self.measure_sequential(server, result, gateway)

    @contextmanager
    def failures_recorded(self, name: str) -> Iterator[None]:
        """Turn a target's failure into a line of the report, and stop that target."""
        try:
            yield
        except (BenchError, RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
            lines = str(exc).strip().splitlines() or [repr(exc)]
            # First line says what failed; the last line of a log tail usually says why.
            error = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"
            self.results[name].error = error
            log(f"{name} FAILED: {exc}")
            server = self.servers.pop(name, None)
            if server is not None:
                kill_group(server.proc)

    def measure_sequential(self, server: Server, result: TargetResult, gateway: bool) -> None:
        endpoint = targets.endpoint_of(server)
        body = chat_body(HIT_PROMPT)
        result.hit_verified = self.verify_hit(endpoint, body) if gateway else None
        measure_latency(endpoint, body, requests=50, warmup=0)  # warm-up, then idle memory
        result.idle_rss_mb = tree_rss_mb(server.pid)
        log(f"{server.name}: idle RSS {result.idle_rss_mb:.1f} MB; hit latency at c=1")
        result.hit = measure_latency(endpoint, body, self.args.latency_requests)
        if gateway:
            stream_body = chat_body(HIT_PROMPT, stream=True)
            result.stream_hit_verified = self.verify_hit(endpoint, stream_body)
            result.stream_hit = measure_latency(endpoint, stream_body, self.args.stream_requests)

    def verify_hit(self, endpoint: Endpoint, body: bytes) -> bool:
        """Two identical requests: the stub numbers each answer, so equal text means a hit."""
        with KeepAliveClient(endpoint) as client:
            first = answer_text(post_ok(client, body))
            second = answer_text(post_ok(client, body))
        return first == second

    def measure_throughput(self) -> None:
        """``--rounds`` rounds of wrk over every live target in turn (after a warm-up run)."""
        args = self.args
        body = chat_body(HIT_PROMPT)
        for round_ in range(args.rounds):
            for name, server in list(self.servers.items()):
                result = self.results[name]
                log(
                    f"{name}: wrk round {round_ + 1}/{args.rounds}, {args.duration:.0f} s x "
                    f"{args.connections} connections"
                )
                with self.failures_recorded(name):
                    endpoint = targets.endpoint_of(server)
                    if round_ == 0:
                        run_wrk(endpoint, body, min(2.0, args.duration), args.connections, args.threads)
                    before = self.stub.calls()["chat"]
                    wrk = run_wrk(endpoint, body, args.duration, args.connections, args.threads)
                    self.record_round(result, wrk, self.stub.calls()["chat"] - before)
                    log(f"{name}: {wrk.requests_per_s:,.0f} req/s")

    def record_round(self, result: TargetResult, wrk: WrkResult, upstream_calls: int) -> None:
        result.wrk_rounds.append(wrk.requests_per_s)
        if result.wrk is None or wrk.requests_per_s > result.wrk.requests_per_s:
            result.wrk = wrk
        if result.name in self.gateways:
            result.upstream_calls_during_load = (result.upstream_calls_during_load or 0) + upstream_calls

    def measure_misses(self) -> None:
        """Unique prompts, sent in turn to each gateway and straight to the stub."""
        gateways = [targets.endpoint_of(s) for n, s in self.servers.items() if n in self.gateways]
        if not gateways:
            return
        direct = Endpoint("stub (direct)", self.stub.host, self.stub.port, headers={})
        log(
            f"misses: {self.args.miss_requests} unique prompts x {len(gateways) + 1} targets, "
            f"upstream delay {self.args.upstream_delay_ms:.0f} ms"
        )
        prompt = f"bench miss {self.nonce} #{{}}: tell me something new."
        before = self.stub.calls()["chat"]
        latencies = measure_interleaved(
            [*gateways, direct], lambda i: chat_body(prompt.format(i)), self.args.miss_requests
        )
        upstream_calls = self.stub.calls()["chat"] - before
        for name, latency in latencies.items():
            self.results.setdefault(name, TargetResult(name)).miss = latency
        expected = self.args.miss_requests * (len(gateways) + 1)
        if upstream_calls != expected:
            self.results["stub (direct)"].notes.append(
                f"{upstream_calls} upstream calls for {expected} unique requests"
            )

    def check_hits(self) -> None:
        for name in self.gateways:
            if self.results[name].upstream_calls_during_load:
                self.results[name].notes.append(
                    "the upstream was called during the hit load: not every request was a hit"
                )


def header_lines(args: argparse.Namespace, litellm_version: str | None, load: float) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(
        ["git", "-C", str(targets.REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit: {rev or 'none'}"
        " (plus uncommitted changes, if any)",
        f"- machine: {os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()};"
        f" LiteLLM {litellm_version or 'not run'}",
        f"- load average (1 min) before the run: {load:.2f}"
        + (" -- the machine was busy: absolute numbers are noisy" if load > 0.5 else ""),
        f"- hit throughput: `wrk -t{args.threads} -c{args.connections} -d{args.duration:.0f}s`"
        f" POSTing one cached chat request; best of {args.rounds} rounds taken in turn over the"
        " targets, after a 2 s warm-up run",
        f"- hit latency: {args.latency_requests} sequential requests on one keep-alive connection"
        f" (streaming: {args.stream_requests}); idle RSS after warm-up, server and children",
        f"- misses: {args.miss_requests} unique prompts per target, interleaved, stub upstream"
        f" delay {args.upstream_delay_ms:.0f} ms",
        "- all servers single-process on loopback; uvicorn options for the trivial app:"
        f" `{' '.join(targets.UVICORN_OPTIONS)}`",
    ]


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_targets(args: argparse.Namespace, workdir: Path, litellm_python: Path | None) -> dict[str, TargetResult]:
    """Start everything, measure, and stop everything (the ``ExitStack``), whatever happens."""
    with ExitStack() as stack:
        procs = ProcessSet(workdir)
        stack.callback(procs.close)
        log(f"starting stub upstream (delay {args.upstream_delay_ms:.0f} ms); logs in {workdir}")
        stub = stack.enter_context(StubUpstream(delay_ms=args.upstream_delay_ms))
        config = targets.write_gateway_config(workdir / "config.yaml", stub.url)
        bench = Bench(args, procs, stub)
        bench.add("trivial-asgi", lambda: targets.start_trivial(procs), gateway=False)
        if not args.skip_reprise:
            bench.add("reprise", lambda: targets.start_reprise(procs, config), gateway=True)
        if litellm_python is not None:
            bench.add("litellm", lambda: targets.start_litellm(procs, litellm_python, config), gateway=True)
        bench.measure_throughput()
        bench.check_hits()
        bench.measure_misses()
        return bench.results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_wrk()
    load = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, _raise_system_exit)  # so ``finally`` cleans up on kill
    litellm_python: Path | None = None
    if not args.skip_litellm:
        litellm_python = targets.ensure_litellm_venv(args.litellm_python.absolute())
    workdir = Path(tempfile.mkdtemp(prefix="reprise-bench-"))
    keep_logs = True
    try:
        results = run_targets(args, workdir, litellm_python)
        keep_logs = args.keep_logs or any(r.error for r in results.values())
    finally:
        if not keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    version = targets.litellm_version(litellm_python) if litellm_python else None
    report = render(order(results), header_lines(args, version, load))
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    log(f"wrote {args.out}" + (f"; server logs kept in {workdir}" if keep_logs else ""))
    failed = [c for c in make_checks(results) if c.verdict == "FAIL"]
    return 1 if failed else 0


def order(results: dict[str, TargetResult]) -> dict[str, TargetResult]:
    names = ["reprise", "litellm", "trivial-asgi", "stub (direct)"]
    return {n: results[n] for n in names if n in results}


if __name__ == "__main__":
    sys.exit(main())
