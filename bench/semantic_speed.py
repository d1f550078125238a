"""Semantic cache speed: embedding, vector search, a whole lookup, and the exact-hit path.

    python bench/semantic_speed.py [--entries 10000 --large 100000]

In one process, no network: the embedded model (``use-multilingual-v3``), the embedded
vector index (one scope filled with random unit vectors plus real prompts), the
semantic driver over an in-memory exact store. The exact-hit figure is
``AsyncCache.get_or_produce`` with and without the semantic fallback attached, as a
ratio (the fallback must not cost an exact hit anything).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import numpy as np

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.memory import MemoryBackend
from reprise.backends.vector import VectorRecord
from reprise.cache import AsyncCache, Outcome
from reprise.core.policy import CachePlan
from reprise.embeddings.base import load_embedder
from reprise.semantic.cache import SemanticCache
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import default_settings

PROMPTS = [
    "How do I reset my password?", "What is your refund policy?", "Can I pay with PayPal?",
    "什么是人工智能？", "How do I cancel my subscription?", "Do you deliver on Sundays?",
    "Wie setze ich mein Passwort zurück?", "¿Cuál es el horario de apertura?",
]
QUERIES = ["how can I reset my password", "AI 是什么？", "what's the refund policy", "is PayPal accepted"]
PLAN = CachePlan(read=True, store=True, ttl=None, max_age=None, namespace=None)


def p50(samples: list[float]) -> float:
    return float(np.percentile(np.array(samples) * 1000, 50))


def p95(samples: list[float]) -> float:
    return float(np.percentile(np.array(samples) * 1000, 95))


async def timed(fn: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


async def fill(store: LocalVectorStore, n: int, dim: int, scope: str) -> None:
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for i in range(n):
        await store.upsert(VectorRecord(scope, f"filler-{i}", f"filler {i}", rows[i]))


async def run(entries: int, large: int) -> None:
    embedder = load_embedder("use-multilingual-v3")
    matcher = Matcher(embedder, default_settings(embedder.name), load_embedder("multilingual-e5-small"))
    embed_times = []
    for text in PROMPTS * 25:
        start = time.perf_counter()
        embedder.embed([text])
        embed_times.append(time.perf_counter() - start)
    print("| measurement | p50 ms | p95 ms |\n|---|---|---|")
    print(f"| embed one short prompt (use-multilingual-v3) | {p50(embed_times):.2f} | {p95(embed_times):.2f} |")
    query = embedder.embed(["how can I reset my password"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (entries, large):
            store = LocalVectorStore(f"{tmp}/{n}", embedder.dim)
            await fill(store, n, embedder.dim, "scope")
            samples = await timed(lambda s=store: s.search("scope", query, 4, 0.7), 200)
            print(f"| vector search alone, {n:,} entries in the scope | {p50(samples):.2f} | {p95(samples):.2f} |")
            await store.aclose()
        cache = AsyncCache(MemoryBackend(max_entries=entries * 2))
        store = LocalVectorStore(f"{tmp}/lookup", embedder.dim)
        semantic = SemanticCache(matcher, store)
        await fill(store, entries, embedder.dim, "")
        for text in PROMPTS:
            body = {"model": "m", "messages": [{"role": "user", "content": text}]}
            request = semantic.prepare(body, PLAN)
            assert request is not None
            await cache.write(text, cache.make_entry(b"{}", None, {}))
            request.query = type(request.query)(scope="", text=text)
            await semantic.remember(request, text, None)

        async def lookup(text: str) -> object:
            request = semantic.prepare({"model": "m", "messages": [{"role": "user", "content": text}]}, PLAN)
            assert request is not None
            request.query = type(request.query)(scope="", text=text)
            return await semantic.lookup(request, cache, None)

        miss = await timed(lambda: lookup("Which trains run to Leeds after midnight?"), 100)
        print(f"| semantic lookup incl. embedding, {entries:,} entries, miss | {p50(miss):.2f} | {p95(miss):.2f} |")
        for text in QUERIES:
            hit = await timed(lambda t=text: lookup(t), 30)
            label = f"semantic lookup incl. embedding and judge: {text!r}"
            print(f"| {label} | {p50(hit):.2f} | {p95(hit):.2f} |")
        await exact_path(cache, semantic)
        await semantic.aclose()


async def exact_path(cache: AsyncCache, semantic: SemanticCache) -> None:
    await cache.write("exact", cache.make_entry(b'{"ok": true}', None, {}))

    async def produce() -> Outcome:
        raise AssertionError("an exact hit never produces")

    async def fallback() -> None:
        raise AssertionError("an exact hit never looks up semantically")

    rounds = 20000
    best: dict[str, float] = {}
    for label, extra in (("exact only", None), ("with semantic fallback", fallback)) * 3:
        start = time.perf_counter()
        for _ in range(rounds):
            await cache.get_or_produce("exact", PLAN, produce, extra)
        per = (time.perf_counter() - start) / rounds * 1e6
        best[label] = min(best.get(label, per), per)
    ratio = best["with semantic fallback"] / best["exact only"]
    print(f"\nexact hit through the driver: {best['exact only']:.2f} us without, "
          f"{best['with semantic fallback']:.2f} us with the semantic fallback attached (ratio {ratio:.2f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args(argv)
    asyncio.run(run(args.entries, args.large))
    return 0


if __name__ == "__main__":
    sys.exit(main())
