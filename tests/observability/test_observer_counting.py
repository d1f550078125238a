"""The observer's batch counting: hits grouped per key count exactly as one by one would.

Exact hits in one settled batch are counted per (time bucket, model, key) group
(observability/observer.py); these tests hold the group path to the per-request one.
"""

from __future__ import annotations

import io

from reprise.config.loader import parse_config
from reprise.core.entry import CacheEntry
from reprise.observability.logs import AccessLog
from reprise.observability.observer import Observer, RequestRecord

CONFIG = {
    "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "api_base": "http://127.0.0.1:9/v1",
                                                          "api_key": "sk-x"}}],
    "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
    "general_settings": {"master_key": "sk-a-long-enough-master-key-for-tests"},
}
USAGE = {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}


def finished(observer: Observer, cache: str, key: str | None, ended: float, elapsed: float,
             similarity: float | None = None) -> RequestRecord:
    record = RequestRecord(f"id{ended}", 0.0, "/v1/chat/completions", model="m", caller="master")
    entry = CacheEntry(b"{}", 0.0, meta=USAGE) if cache == "hit" else None
    record.report(cache, key, entry, similarity)
    observer.response_headers(record, 200, [])
    record.elapsed, record.ended = elapsed, ended
    return record


def test_grouped_hits_count_as_each_would() -> None:
    observer = Observer(parse_config(CONFIG), None)
    out = io.StringIO()
    observer.log = AccessLog(False, True, out)
    t0 = 1_700_000_005.0  # 5 s into a 10 s bucket: the batch spans a bucket boundary
    records = [finished(observer, "miss", "ns:k1", t0, 0.3)]
    records += [finished(observer, "hit", "ns:k1", t0 + i, 0.001 * (i + 1)) for i in range(8)]  # t0..t0+7
    records += [finished(observer, "hit", "k2", t0 + 1, 0.002), finished(observer, "bypass", None, t0 + 2, 0.2),
                finished(observer, "hit", "k2", t0 + 6, 0.004, similarity=0.97)]
    records.sort(key=lambda record: record.ended)  # the order they end in, as Observer.end appends them
    observer._pending = records
    observer.settle()

    metrics = observer.metrics
    assert metrics.requests.values == {("m", "_other"): 9.0, ("m", ""): 3.0}
    assert metrics.hits.values == {("m", "_other"): 8.0, ("m", ""): 1.0}
    assert metrics.semantic_hits.values == {("m", ""): 1.0}
    assert metrics.hit_latency.count() == 10
    assert abs(metrics.hit_latency.sum() - (sum(0.001 * (i + 1) for i in range(8)) + 0.002 + 0.004)) < 1e-12
    assert metrics.saved_tokens.values[("m", "_other", "prompt")] == 8 * 3
    assert metrics.saved_tokens.values[("m", "", "completion")] == 2 * 4
    # upstream calls took 0.25 s on average (the miss, the bypass) by the end of the batch, which
    # is when grouped hits are counted: each hit saved that minus its own latency
    assert abs(metrics.saved_seconds.get(("m",)) - sum(0.25 - e for e in
               [0.001 * (i + 1) for i in range(8)] + [0.002, 0.004])) < 1e-9
    first, second = observer.series._buckets[-2:]
    assert (first.start, first.requests, first.hits, first.misses) == (1_700_000_000, 8, 6, 1)  # t0..t0+4, k2, bypass
    assert (second.start, second.requests, second.hits, second.semantic_hits) == (1_700_000_010, 4, 4, 1)
    assert first.saved_tokens + second.saved_tokens == 10 * 7
    assert observer.hits.get("ns:k1") == 8 and observer.hits.get("k2") == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == len(records)
    assert [line.split(" cache=")[1].split()[0] for line in lines] == [r.cache for r in records]  # in order
