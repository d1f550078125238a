"""The embedded vector index past its bounds: what an upsert costs, and the longest one.

Three runs of the same flood (``--flood`` upserts, each in a new one-row scope of one tenant,
512 dimensions, past a ``--max-vectors`` bound), after ``--earlier`` rows written first by:

* ``one owner``: the flooding tenant itself (the baseline: plain first in, first out);
* ``one light tenant``: another tenant (its rows must all survive: the largest owner goes first);
* ``many namespaces``: the operator, one namespace each (as many owners as rows).

For each: mean microseconds an upsert, the ratio to the baseline measured in the same run,
the slowest upsert (the log rewrite, which runs in a worker thread, and a copy of 2,048 scopes
per write), and whether every earlier row of another owner is still found.

    python bench/vector_bounds.py [--flood 60000] [--max-vectors 50000] [--earlier 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.vector import VectorRecord

DIM = 512


def vectors(n: int) -> list[np.ndarray]:
    rows = np.random.default_rng(7).standard_normal((n, DIM)).astype(np.float32)
    return list(rows / np.linalg.norm(rows, axis=1, keepdims=True))


async def run(kind: str, flood: int, max_vectors: int, earlier: int,
              pool: list[np.ndarray]) -> tuple[float, float, bool]:
    store = LocalVectorStore(Path(tempfile.mkdtemp(prefix="reprise-bench-")), dim=DIM, max_vectors=max_vectors)
    key = {"one owner": "tB/ns:a{}", "one light tenant": "tA/ns:a{}", "many namespaces": "n{}:a{}"}[kind]
    for i in range(earlier):
        await store.upsert(VectorRecord(f"a{i}", key.format(i, i), "p", pool[i % len(pool)]))
    slowest, started = 0.0, time.perf_counter()
    for i in range(flood):
        before = time.perf_counter()
        await store.upsert(VectorRecord(f"b{i}", f"tB/ns:b{i}", "p", pool[i % len(pool)]))
        slowest = max(slowest, time.perf_counter() - before)
        if i % 256 == 0:
            await asyncio.sleep(0)  # let a finished log rewrite report back, as a server's loop would
    mean = (time.perf_counter() - started) / flood
    kept = True
    if kind != "one owner":
        for i in range(0, earlier, max(1, earlier // 200)):
            found = await store.search(f"a{i}", pool[i % len(pool)], k=1, threshold=0.99)
            kept = kept and bool(found)
    await store.compacted()
    await store.aclose()
    return mean, slowest, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=60_000)
    parser.add_argument("--max-vectors", type=int, default=50_000)
    parser.add_argument("--earlier", type=int, default=20_000)
    args = parser.parse_args()
    pool = vectors(2_000)
    print(f"{args.flood:,} upserts in new scopes past max_vectors={args.max_vectors:,}, "
          f"after {args.earlier:,} earlier rows")
    print("| earlier rows written by | us / upsert | vs one owner | slowest upsert "
          "| earlier rows of another owner kept |")
    print("|---|---|---|---|---|")
    base = None
    for kind in ("one owner", "one light tenant", "many namespaces"):
        mean, slowest, kept = asyncio.run(run(kind, args.flood, args.max_vectors, args.earlier, pool))
        base = base or mean
        kept_text = "-" if kind == "one owner" else ("all (sampled)" if kept else "NO")
        print(f"| {kind} | {mean * 1e6:.0f} | {mean / base:.2f}x | {slowest * 1e3:.0f} ms | {kept_text} |")


if __name__ == "__main__":
    main()
