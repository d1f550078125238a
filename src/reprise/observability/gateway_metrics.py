"""The gateway's metric set: every name ``/metrics`` exports, and how a request moves them.

Names follow Prometheus conventions (``reprise_`` prefix, ``_total`` counters,
base units: seconds, USD). Request counters carry ``model`` (the client-facing
name; names not in the config are folded into ``_other`` so a client cannot
create series at will) and ``namespace`` (of the stored key; empty without one).
What only the cache driver knows (stores, backend errors, coalesced requests) is
read from its :class:`~reprise.cache.CacheStats` at scrape time, by ``backend``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from reprise.cache import AsyncCache
from reprise.observability.metrics import (
    SIMILARITY_BUCKETS,
    Collected,
    Counter,
    Histogram,
    Labels,
    Registry,
)

if TYPE_CHECKING:
    from reprise.observability.observer import RequestRecord
    from reprise.semantic.judge import JudgeStats

_MN = ("model", "namespace")


class GatewayMetrics:
    """The registry and its named metrics; :meth:`record` is the only writer."""

    def __init__(self, cache: AsyncCache | None, started: float) -> None:
        self.cache = cache
        self._upstream_calls: dict[Labels, int] = {}  # the upstream latency histogram's counts, kept at hand
        r = self.registry = Registry()
        self.requests = r.add(Counter("reprise_requests_total", "API requests answered (chat and embeddings).", _MN))
        self.hits = r.add(Counter("reprise_cache_hits_total", "Requests answered by an exact cache hit.", _MN))
        self.semantic_hits = r.add(Counter(
            "reprise_cache_semantic_hits_total", "Requests answered by a semantic (similar prompt) hit.", _MN))
        self.misses = r.add(Counter("reprise_cache_misses_total", "Cacheable requests not found in the cache.", _MN))
        self.bypasses = r.add(Counter(
            "reprise_cache_bypasses_total", "Requests that skipped the cache (controls, mode, disabled).", _MN))
        self.upstream_errors = r.add(Counter(
            "reprise_upstream_errors_total", "Provider errors: its 4xx/5xx answers, unreachable or timed out.", _MN))
        self.saved_tokens = r.add(Counter(
            "reprise_cache_saved_tokens_total", "Tokens served from cache (stored usage), by kind.",
            ("model", "namespace", "kind")))
        self.saved_usd = r.add(Counter(
            "reprise_cache_saved_usd_total", "Estimated provider cost avoided by cache hits, in USD.", _MN))
        self.saved_seconds = r.add(Counter(
            "reprise_cache_saved_seconds_total",
            "Estimated latency avoided: mean upstream latency of the model minus the hit's latency.", ("model",)))
        self.hit_latency = r.add(Histogram(
            "reprise_cache_hit_latency_seconds", "Server time of cache hits, request to last byte.", ("model",)))
        self.upstream_latency = r.add(Histogram(
            "reprise_upstream_latency_seconds",
            "Server time of requests answered by the provider (misses and bypasses).", ("model",)))
        self.similarity = r.add(Histogram(
            "reprise_semantic_similarity", "Best similarity found by semantic lookups.", (), SIMILARITY_BUCKETS))
        for name, attr, text in (
            ("reprise_cache_stores_total", "stores", "Entries written to the cache backend."),
            ("reprise_cache_backend_errors_total", "backend_errors", "Cache backend failures (served fail-open)."),
            ("reprise_cache_coalesced_total", "coalesced", "Requests that shared an identical in-flight call."),
            ("reprise_cache_upstream_calls_total", "upstream_calls", "Provider calls made by cacheable requests."),
        ):
            r.add(Collected(name, text, "counter", ("backend",), self._driver_stat(attr)))
        r.add(Collected("reprise_process_start_time_seconds",
                        "Start time of the oldest running worker (Unix seconds).",
                        "gauge", (), lambda: [((), started)], merge="min"))
        r.add(Collected("reprise_event_loop_tasks",
                        "asyncio tasks alive in the running workers (a leak shows as growth).",
                        "gauge", (), lambda: [((), float(len(asyncio.all_tasks())))]))
        r.add(Collected("reprise_gc_collections_total",
                        "Cyclic garbage collections run by the workers, by generation (server/collector.py).",
                        "counter", ("generation",),
                        lambda: [((str(n),), float(s["collections"])) for n, s in enumerate(gc.get_stats())]))
        r.add(Collected("reprise_gc_frozen_objects",
                        "Objects of the loaded gateway that collections never walk (gc.freeze at start).",
                        "gauge", (), lambda: [((), float(gc.get_freeze_count()))]))

    def initialize(self, models: Iterable[str], namespace: str) -> None:
        """Zero series for the configured models, so dashboards see 0 rather than no data."""
        for model in models:
            for counter in (self.requests, self.hits, self.semantic_hits, self.misses, self.bypasses,
                            self.upstream_errors, self.saved_usd):
                counter.inc((model, namespace), 0)

    def _driver_stat(self, attr: str) -> Callable[[], Iterable[tuple[Labels, float]]]:
        def read() -> Iterable[tuple[Labels, float]]:
            if self.cache is None:
                return []
            return [((self.cache.backend.name,), float(getattr(self.cache.stats, attr)))]

        return read

    def record_hits(self, model: str, namespace: str, elapsed: list[float], prompt: int, completion: int,
                    usd: float, similarity: float | None = None) -> float:
        """Count hits of one model and namespace (one, or a group of exact hits the observer
        gathered); return the latency they saved. ``similarity``: one semantic hit's."""
        labels = (model, namespace)
        count = float(len(elapsed))
        values = self.requests.values  # Counter.inc, inline: this runs for every hit
        values[labels] = values.get(labels, 0.0) + count
        if similarity is not None:
            self.similarity.observe((), similarity)
        values = (self.hits if similarity is None else self.semantic_hits).values
        values[labels] = values.get(labels, 0.0) + count
        self.hit_latency.observe_many((model,), elapsed)
        if prompt or completion:
            values = self.saved_tokens.values
            kind = (model, namespace, "prompt")
            values[kind] = values.get(kind, 0.0) + prompt
            kind = (model, namespace, "completion")
            values[kind] = values.get(kind, 0.0) + completion
        if usd:
            values = self.saved_usd.values
            values[labels] = values.get(labels, 0.0) + usd
        calls = self._upstream_calls.get((model,))
        if not calls:
            return 0.0
        upstream = self.upstream_latency.values[(model,)][-1] / calls
        saved = sum(max(0.0, upstream - seconds) for seconds in elapsed)
        self.saved_seconds.inc((model,), saved)
        return saved

    def record(self, rec: RequestRecord, namespace: str, elapsed: float) -> None:
        """Count one finished request that was not a hit (hits: :meth:`record_hits`)."""
        labels = (rec.model, namespace)
        values = self.requests.values  # Counter.inc, inline: this runs for every request
        values[labels] = values.get(labels, 0.0) + 1.0
        outcome = rec.cache
        if outcome == "miss" or outcome == "bypass":
            (self.misses if outcome == "miss" else self.bypasses).inc(labels)
            if rec.status < 400:
                model = (rec.model,)
                self.upstream_latency.observe(model, elapsed)
                self._upstream_calls[model] = self._upstream_calls.get(model, 0) + 1
            else:
                self.upstream_errors.inc(labels)
        elif rec.status in (502, 504):  # the provider was unreachable or timed out
            self.upstream_errors.inc(labels)


#: The semantic judge's counters: (name, JudgeStats field, label, labels always shown, help).
_JUDGE_METRICS = (
    ("reprise_semantic_judge_calls_total", "calls", "verdict", ("same", "different", "unclear", "error", "timeout"),
     "Calls to the semantic judge model, by verdict (unclear: neither yes nor no; error and timeout: a miss)."),
    ("reprise_semantic_judge_cached_verdicts_total", "cached", "verdict", ("same", "different"),
     "Semantic judge verdicts reused from its verdict cache (no call), by verdict."),
    ("reprise_semantic_judge_skipped_total", "skipped", "reason", ("busy", "limit", "too_long"),
     "Candidates in the judge's band not judged (a miss): busy (concurrent calls at the bound), "
     "limit (calls per lookup used up), too_long (a prompt over the judged length)."),
)


def add_judge_metrics(registry: Registry, stats: JudgeStats) -> None:
    """Export the semantic judge's counters (only when ``semantic_cache_judge_model`` is set)."""
    for name, attr, label, known, text in _JUDGE_METRICS:
        def read(attr: str = attr, known: tuple[str, ...] = known) -> Iterable[tuple[Labels, float]]:
            table: dict[str, int] = getattr(stats, attr)
            return [((value,), float(table.get(value, 0))) for value in sorted({*known, *table})]

        registry.add(Collected(name, text, "counter", (label,), read))


_INDEX_METRICS = (
    ("reprise_vector_index_vectors", "gauge", 0, "Vectors in the embedded index (local-semantic)."),
    ("reprise_vector_index_scopes", "gauge", 1, "Scopes (conversation contexts) in the embedded index."),
    ("reprise_vector_index_bytes", "gauge", 2, "Estimated memory of the embedded index (what max_index_bytes bounds)."),
    ("reprise_vector_index_evicted_total", "counter", 3,
     "Vectors evicted by the embedded index's bounds (the largest owner's oldest first)."),
    ("reprise_vector_index_expired_total", "counter", 4, "Expired vectors removed from the embedded index."),
)


def add_index_metrics(registry: Registry, counters: Callable[[], tuple[int, ...] | None]) -> None:
    """Export the embedded vector index's counts (only with ``type: local-semantic``); no series
    until the index was first used."""
    for name, kind, position, text in _INDEX_METRICS:
        def read(position: int = position) -> Iterable[tuple[Labels, float]]:
            values = counters()
            return [] if values is None else [((), float(values[position]))]

        registry.add(Collected(name, text, kind, (), read))


_QDRANT_METRICS = (
    ("reprise_qdrant_sweeps_total", "sweeps", "Expiry sweeps of the Qdrant collections (qdrant-semantic)."),
    ("reprise_qdrant_expired_removed_total", "removed", "Expired points the sweeps deleted, both collections."),
    ("reprise_qdrant_evicted_total", "evicted", "Points deleted, oldest writes first, to keep within max_vectors."),
    ("reprise_qdrant_sweep_failures_total", "failures", "Sweeps that failed (Qdrant faults; logged, never raised)."),
)


def add_qdrant_metrics(registry: Registry, stats: Callable[[], object | None]) -> None:
    """Export a ``qdrant-semantic`` store's sweep counters (``SweepStats``), read at scrape time."""
    for name, attr, text in _QDRANT_METRICS:
        def read(attr: str = attr) -> Iterable[tuple[Labels, float]]:
            found = stats()
            return [] if found is None else [((), float(getattr(found, attr)))]

        registry.add(Collected(name, text, "counter", (), read))
