"""The JSON behind ``GET /cache/stats`` and the dashboard: totals, per model, top prompts.

Everything is computed when asked (a dashboard polls every few seconds; requests never
pay for it), from the machine's numbers (:class:`~reprise.observability.workers.MachineView`:
with ``--workers N`` every worker's counts, with one worker the process's own). Top
prompts' previews are read from the store, so an entry deleted or expired since is left out.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any, TypeVar

from reprise.cache import AsyncCache
from reprise.errors import BackendError
from reprise.observability.inventory import describe
from reprise.observability.metrics import Counter, Histogram, Registry
from reprise.observability.observer import Observer
from reprise.observability.workers import MachineView

_M = TypeVar("_M", Counter, Histogram)


def _by_model(counter: Counter) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in counter.values.items():
        out[labels[0]] = out.get(labels[0], 0.0) + value
    return out


def _mean_ms(total: float, count: int) -> float | None:
    return round(total / count * 1000, 3) if count else None


def _metric(registry: Registry, name: str, kind: type[_M]) -> _M:
    for metric in registry.metrics:
        if metric.name == name and isinstance(metric, kind):
            return metric
    raise KeyError(name)


class _Named:
    """The merged registry's request metrics under the names :class:`GatewayMetrics` gives them."""

    def __init__(self, registry: Registry) -> None:
        def counter(name: str) -> Counter:
            return _metric(registry, f"reprise_{name}_total", Counter)

        self.requests = counter("requests")
        self.hits = counter("cache_hits")
        self.semantic_hits = counter("cache_semantic_hits")
        self.misses = counter("cache_misses")
        self.bypasses = counter("cache_bypasses")
        self.upstream_errors = counter("upstream_errors")
        self.saved_tokens = counter("cache_saved_tokens")
        self.saved_usd = counter("cache_saved_usd")
        self.saved_seconds = counter("cache_saved_seconds")
        self.hit_latency = _metric(registry, "reprise_cache_hit_latency_seconds", Histogram)
        self.upstream_latency = _metric(registry, "reprise_upstream_latency_seconds", Histogram)
        self.similarity = _metric(registry, "reprise_semantic_similarity", Histogram)


async def stats_view(cache: AsyncCache | None, observer: Observer, machine: MachineView,
                     top: int = 10) -> dict[str, Any]:
    """Totals since the server started, per-model rows, top prompts, similarity buckets;
    ``workers`` says which workers they cover and how old the oldest part is."""
    m = _Named(machine.registry)
    totals = _totals(m)
    columns = {"requests": m.requests, "hits": m.hits, "semantic_hits": m.semantic_hits, "misses": m.misses,
               "bypasses": m.bypasses, "saved_usd": m.saved_usd}
    per = {name: _by_model(counter) for name, counter in columns.items()}
    models = [
        {"model": model, **{name: round(per[name].get(model, 0.0), 6) for name in columns},
         "hit_latency_ms_avg": _mean_ms(m.hit_latency.sum((model,)), m.hit_latency.count((model,))),
         "upstream_latency_ms_avg": _mean_ms(m.upstream_latency.sum((model,)), m.upstream_latency.count((model,)))}
        for model in sorted(per["requests"])
    ]
    sim = m.similarity
    return {
        "backend": cache.backend.name if cache else None,
        "capabilities": asdict(cache.backend.capabilities) if cache else None,
        "process": {"pid": os.getpid(), "started_at": observer.started,
                    "uptime_s": round(time.time() - observer.started, 1)},
        "workers": machine.workers,
        "totals": totals,
        "driver": machine.driver,
        "models": models,
        "top": await _top_prompts(cache, machine.top(top)),
        "similarity": {
            "enabled": bool(sim.count()) or observer.semantic_configured,
            "buckets": [{"le": None if b == float("inf") else b, "count": n} for b, n in sim.distribution()],
        },
        "bucket_seconds": observer.series.bucket_seconds,
    }


def _totals(m: _Named) -> dict[str, Any]:
    """The whole-server row of :func:`stats_view`."""
    hits, semantic = m.hits.total(), m.semantic_hits.total()
    misses = m.misses.total()
    lookups = hits + semantic + misses
    saved_prompt = sum(v for k, v in m.saved_tokens.values.items() if k[2] == "prompt")
    saved_completion = sum(v for k, v in m.saved_tokens.values.items() if k[2] == "completion")
    totals = {
        "requests": int(m.requests.total()),
        "hits": int(hits),
        "semantic_hits": int(semantic),
        "misses": int(misses),
        "bypasses": int(m.bypasses.total()),
        "upstream_errors": int(m.upstream_errors.total()),
        "hit_rate": round((hits + semantic) / lookups, 4) if lookups else None,
        "saved_prompt_tokens": int(saved_prompt),
        "saved_completion_tokens": int(saved_completion),
        "saved_tokens": int(saved_prompt + saved_completion),
        "saved_usd": round(m.saved_usd.total(), 6),
        "saved_seconds": round(m.saved_seconds.total(), 3),
        "hit_latency_ms_avg": _mean_ms(m.hit_latency.sum(), m.hit_latency.count()),
        "upstream_latency_ms_avg": _mean_ms(m.upstream_latency.sum(), m.upstream_latency.count()),
    }
    return totals


async def _top_prompts(cache: AsyncCache | None, rows: list[tuple[str, int, str, float]]) -> list[dict[str, Any]]:
    if cache is None or not rows:
        return []
    try:
        raws = await cache.backend.get_many([key for key, *_ in rows])
    except BackendError:
        raws = [None] * len(rows)
    now = time.time()
    out = []
    for (key, count, model, last_hit), raw in zip(rows, raws, strict=True):
        view = describe(key, raw, now) if raw is not None else None
        if view is None:
            continue
        out.append({"key": key, "hits": count, "model": view["model"] or model, "preview": view["preview"],
                    "last_hit_at": last_hit, "usage": view["usage"]})
    return out
