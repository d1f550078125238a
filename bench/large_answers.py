"""Large cached answers against the same bytes from a trivial app: ``python bench/large_answers.py``.

The quick mode of bench/scaling.py for issue 15 item 3: one ``reprise serve`` (cache
``local``, 1 worker) filled with 1,000 answers of ~100 KB and 1,000 of ~1 KB, then wrk
sends uniformly random hits over each set, plain and ``stream: true``. Each of the four
cells has its own trivial app sending the very bytes of a Reprise hit of that cell (the
JSON answer, or its SSE replay as ``text/event-stream``), with a ``content-length`` as
Reprise sends it. Two baselines per cell:

* ``uvicorn``: ``python -m uvicorn`` with bench/targets.py's options (as bench/scaling.py);
* ``same-http``: uvicorn with exactly the options ``reprise serve`` passes it, Reprise's
  HTTP protocol included (one write per sized answer), so only the cache's work differs.

``--before-src DIR`` adds a second gateway importing Reprise from ``DIR`` (e.g. the main
checkout's ``src``), measured in the same rounds: a before/after comparison that the
machine's drift cannot fake.

Gateway and baselines run at once and are measured in turn, round after round. Reported
per cell: median hits/s, the ratio to each baseline, and server CPU µs per request (utime +
stime of the server process over the wrk run, divided by its requests), which a shared,
noisy machine disturbs far less than throughput.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import targets
from bench.load import BenchError, require_wrk
from bench.procs import ProcessSet, Server, free_port, wait_ready
from bench.scaling import CONFIG, LARGE, SMALL, Target, _text, fill, start_gateway, wrk

CLK_TCK = os.sysconf("SC_CLK_TCK")
CELLS = [("1KB", "small", False), ("1KB stream", "small", True),
         ("100KB", "large", False), ("100KB stream", "large", True)]
KEYS = 1_000


@dataclass
class Runs:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def hit_bytes(gw: Target, model: str, stream: bool) -> bytes:
    """The body of one hit, checked to be one."""
    conn = http.client.HTTPConnection(gw.server.host, gw.server.port, timeout=30)
    try:
        payload = {"model": model, "messages": [{"role": "user", "content": "q1"}]}
        if stream:
            payload["stream"] = True
        conn.request("POST", "/chat/completions", json.dumps(payload),
                     {"Content-Type": "application/json", **targets.AUTH})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or response.getheader("x-reprise-cache") != "hit":
            raise BenchError(f"{gw.name}: q1 of {model} (stream={stream}) is not a hit")
        return body
    finally:
        conn.close()


def start_baseline(procs: ProcessSet, workdir: Path, cell: str, body: bytes, stream: bool,
                   kind: str) -> Target:
    name = f"{kind} {cell}"
    body_file = workdir / f"{name.replace(' ', '-')}.body"
    body_file.write_bytes(body)
    port = free_port()
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "trivial_bytes:app", "--app-dir", str(targets.REPO / "bench"),
               "--host", "127.0.0.1", "--port", str(port), *targets.UVICORN_OPTIONS]
    else:
        cmd = [sys.executable, str(targets.REPO / "bench" / "trivial_bytes.py"), "--port", str(port)]
    pythonpath = os.pathsep.join(filter(None, [str(targets.REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = targets._clean_env(TRIVIAL_BODY_FILE=str(body_file), PYTHONPATH=pythonpath,
                             TRIVIAL_CONTENT_TYPE="text/event-stream" if stream else "application/json")
    server: Server = procs.spawn(name.replace(" ", "-"), cmd, port, env=env)
    wait_ready(server, [("/", {})], 30)
    return Target(name, server, 1)


def start_gateway_from(procs: ProcessSet, workdir: Path, src: Path) -> Target:
    """``reprise serve`` as start_gateway does, importing Reprise from ``src``."""
    config = workdir / "config-before.yaml"
    config.write_text(CONFIG.format(small=_text(SMALL), large=_text(LARGE), master_key=targets.MASTER_KEY,
                                    cache_params=json.dumps({"type": "local", "ttl": 36000})))
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from reprise.cli.main import main; sys.exit(main())", "serve",
           "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = procs.spawn("before", cmd, port, env=targets._clean_env(PYTHONPATH=str(src)), cwd=src.parent)
    wait_ready(server, [("/health/readiness", targets.AUTH)], 60)
    return Target("before", server, 1, "local")


def run_cell(target: Target, model: str, stream: bool, args: argparse.Namespace) -> tuple[float, float]:
    os.environ["WRK_STREAM"] = "1" if stream else "0"  # read by random_post.lua (wrk inherits it)
    before = cpu_seconds(target.server.pid)
    result = wrk(target, model, KEYS, args.duration, args.connections, args.threads)
    used = cpu_seconds(target.server.pid) - before
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"{target.name}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors")
    return result.requests_per_s, used / max(1, result.requests) * 1e6


def report(runs: dict[tuple[str, str], Runs], sizes: dict[str, int], args: argparse.Namespace) -> str:
    before = [] if ("before", CELLS[0][0]) not in runs else _before(runs)
    lines = [f"local, 1 worker, {KEYS:,} keys per cell; wrk -t{args.threads} -c{args.connections} "
             f"-d{args.duration:g}s, {args.rounds} rounds interleaved; medians", "",
             "| cell | answer bytes | Reprise hits/s | uvicorn trivial/s | ratio | same-http trivial/s | ratio "
             "| Reprise CPU µs/req | uvicorn trivial CPU µs/req | same-http trivial CPU µs/req |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for cell, _, _ in CELLS:
        med = {who: (statistics.median(runs[who, cell].rps), statistics.median(runs[who, cell].cpu_us))
               for who in ("reprise", "uvicorn", "same-http")}
        lines.append(f"| {cell} | {sizes[cell]:,} | {med['reprise'][0]:,.0f} | {med['uvicorn'][0]:,.0f} | "
                     f"{med['reprise'][0] / med['uvicorn'][0]:.2f}x | {med['same-http'][0]:,.0f} | "
                     f"{med['reprise'][0] / med['same-http'][0]:.2f}x | {med['reprise'][1]:.0f} | "
                     f"{med['uvicorn'][1]:.0f} | {med['same-http'][1]:.0f} |")
    lines += before
    lines += ["", "per round, hits/s (Reprise / uvicorn / same-http):"]
    for cell, _, _ in CELLS:
        lines.append(f"- {cell}: " + "; ".join(
            f"{a:,.0f} / {b:,.0f} / {c:,.0f}" for a, b, c in zip(
                runs["reprise", cell].rps, runs["uvicorn", cell].rps, runs["same-http", cell].rps, strict=True)))
    return "\n".join(lines)


def _before(runs: dict[tuple[str, str], Runs]) -> list[str]:
    lines = ["", "| cell | before hits/s | after hits/s | after / before | before CPU µs/req | after CPU µs/req "
             "| before ratio to same-http |", "|---|---|---|---|---|---|---|"]
    for cell, _, _ in CELLS:
        b, a, t = runs["before", cell], runs["reprise", cell], runs["same-http", cell]
        b_rps, a_rps, t_rps = (statistics.median(x.rps) for x in (b, a, t))
        lines.append(f"| {cell} | {b_rps:,.0f} | {a_rps:,.0f} | {a_rps / b_rps:.2f}x | "
                     f"{statistics.median(b.cpu_us):.0f} | {statistics.median(a.cpu_us):.0f} | {b_rps / t_rps:.2f}x |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="wrk seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="also measure a gateway importing Reprise from this src directory")
    args = parser.parse_args()
    require_wrk()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="reprise-large-"))
    procs = ProcessSet(workdir)
    try:
        gw = start_gateway(procs, workdir, "local", {"type": "local", "ttl": 36000}, 1)
        fill(gw, KEYS, "small")
        fill(gw, KEYS, "large")
        bodies = {cell: hit_bytes(gw, model, stream) for cell, model, stream in CELLS}
        sizes = {cell: len(body) for cell, body in bodies.items()}
        print("answer bytes:", sizes, flush=True)
        targets_of: dict[tuple[str, str], Target] = {("reprise", cell): gw for cell, _, _ in CELLS}
        whos = ["reprise", "uvicorn", "same-http"]
        if args.before_src is not None:
            old = start_gateway_from(procs, workdir, args.before_src.resolve())
            fill(old, KEYS, "small")
            fill(old, KEYS, "large")
            targets_of.update({("before", cell): old for cell, _, _ in CELLS})
            whos.append("before")
        for cell, _, stream in CELLS:
            for kind in ("uvicorn", "same-http"):
                targets_of[kind, cell] = start_baseline(procs, workdir, cell, bodies[cell], stream, kind)
        runs = {who_cell: Runs() for who_cell in targets_of}
        for round_no in range(args.rounds):
            for cell, model, stream in CELLS:
                for who in whos:
                    rps, cpu = run_cell(targets_of[who, cell], model, stream, args)
                    runs[who, cell].rps.append(rps)
                    runs[who, cell].cpu_us.append(cpu)
            print(f"  round {round_no + 1}/{args.rounds} done", flush=True)
        text = report(runs, sizes, args)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return 0
    finally:
        procs.close()


if __name__ == "__main__":
    sys.exit(main())
