"""Hit latency of every inbound API next to chat: ``python bench/inbound_apis.py``.

One gateway (``reprise serve``, ``type: local``) with a ``mock_response`` model, so no
provider is involved: each route's first request is a miss answered locally, every later
one a hit. The routes are measured interleaved at concurrency 1 over one kept-alive
connection each (the same client as ``bench/run.py``), so drift on a shared machine falls
on all of them alike; the table gives each route's p50 as a ratio to plain chat's, from
the same run. A route whose second request is not a hit (``x-reprise-cache``) is reported
as such and not timed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import targets
from bench.load import Endpoint, KeepAliveClient, Latency, post_ok
from bench.procs import ProcessSet

PROMPT = "What is the capital of France? Answer in one word."

CONFIG = f"""\
model_list:
  - model_name: {targets.MODEL}
    litellm_params:
      model: openai/{targets.MODEL}
      mock_response: "Paris."
litellm_settings:
  cache: true
  cache_params:
    type: local
    ttl: 600
general_settings:
  master_key: {targets.MASTER_KEY}
"""


def routes() -> list[tuple[str, str, dict[str, object], dict[str, str]]]:
    """(label, path, body, extra headers) of each route measured, plain and streamed."""
    chat = {"model": targets.MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    responses = {"model": targets.MODEL, "input": PROMPT}
    completions = {"model": targets.MODEL, "prompt": PROMPT, "max_tokens": 8}
    messages = {"model": targets.MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": PROMPT}]}
    anthropic = {"anthropic-version": "2023-06-01"}
    out = []
    for label, path, body, headers in (
        ("chat", "/v1/chat/completions", chat, {}),
        ("responses", "/v1/responses", responses, {}),
        ("completions", "/v1/completions", completions, {}),
        ("messages", "/v1/messages", messages, anthropic),
    ):
        out.append((label, path, body, headers))
        out.append((f"{label} (stream)", path, {**body, "stream": True}, headers))
    return out


def cache_status(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("x-reprise-cache") or "-"
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed hits per route (default 2000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reprise-bench-inbound-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(CONFIG)
        procs = ProcessSet(Path(tmp))
        try:
            server = targets.start_reprise(procs, config)
            measured: list[tuple[str, KeepAliveClient, bytes]] = []
            skipped: list[str] = []
            for label, path, body, extra in routes():
                raw = json.dumps(body).encode()
                headers = {**targets.AUTH, **extra}
                cache_status(server.host, server.port, path, raw, headers)  # the miss
                status, cached = cache_status(server.host, server.port, path, raw, headers)
                if status != 200 or cached != "hit":
                    skipped.append(f"{label}: second request answered {status}, x-reprise-cache {cached}")
                    continue
                endpoint = Endpoint(label, server.host, server.port, path=path, headers=headers)
                measured.append((label, KeepAliveClient(endpoint), raw))
            samples: dict[str, list[float]] = {label: [] for label, _, _ in measured}
            for _ in range(50):  # warm-up
                for _label, client, raw in measured:
                    post_ok(client, raw)
            for _ in range(args.requests):
                for label, client, raw in measured:
                    started = time.perf_counter()
                    post_ok(client, raw)
                    samples[label].append(time.perf_counter() - started)
            for _, client, _ in measured:
                client.close()
        finally:
            procs.close()
    latencies = {label: Latency.from_seconds(values) for label, values in samples.items()}
    base = latencies.get("chat")
    print(f"hit latency at c=1, {args.requests} interleaved hits per route, one `reprise serve` (type: local)\n")
    print("| route | p50 (ms) | p90 (ms) | p99 (ms) | p50 / chat p50 |")
    print("|---|---|---|---|---|")
    for label, latency in latencies.items():
        ratio = f"{latency.p50_ms / base.p50_ms:.2f}x" if base else "-"
        print(f"| {label} | {latency.p50_ms:.3f} | {latency.p90_ms:.3f} | {latency.p99_ms:.3f} | {ratio} |")
    for line in skipped:
        print(f"\nnot measured: {line}")
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
