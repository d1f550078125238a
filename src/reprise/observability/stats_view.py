"""The JSON behind ``GET /cache/stats`` and the dashboard: totals, per model, top prompts.

Everything is computed from the observer's metrics when asked (a dashboard polls
every few seconds; requests never pay for it). Top prompts come from this
process's hit counts; their previews are read from the store, so an entry that
was deleted or expired since is left out.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from reprise.cache import AsyncCache
from reprise.errors import BackendError
from reprise.observability.inventory import describe
from reprise.observability.metrics import Counter
from reprise.observability.observer import Observer


def _by_model(counter: Counter) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in counter.values.items():
        out[labels[0]] = out.get(labels[0], 0.0) + value
    return out


def _mean_ms(total: float, count: int) -> float | None:
    return round(total / count * 1000, 3) if count else None


async def stats_view(cache: AsyncCache | None, observer: Observer, top: int = 10) -> dict[str, Any]:
    """Totals since this process started, per-model rows, top prompts, similarity buckets."""
    m = observer.metrics
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
        "totals": totals,
        "driver": asdict(cache.stats) if cache else None,
        "models": models,
        "top": await _top_prompts(cache, observer, top),
        "similarity": {
            "enabled": bool(sim.count()) or observer.semantic_configured,
            "buckets": [{"le": None if b == float("inf") else b, "count": n} for b, n in sim.distribution()],
        },
        "bucket_seconds": observer.series.bucket_seconds,
    }


async def _top_prompts(cache: AsyncCache | None, observer: Observer, n: int) -> list[dict[str, Any]]:
    rows = observer.hits.top(n)
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
