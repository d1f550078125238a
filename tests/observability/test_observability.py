"""Pure parts of operating the cache: prices, the metrics format, history, inventory errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from reprise.backends.base import Capabilities
from reprise.backends.memory import MemoryBackend
from reprise.config import parse_config
from reprise.core.entry import CacheEntry, encode_entry
from reprise.errors import BackendUnavailable
from reprise.observability import inventory
from reprise.observability.metrics import Counter, Histogram, Registry
from reprise.observability.pricing import builtin_price, resolve_prices
from reprise.observability.series import HitCounter, TimeSeries
from reprise.server.errors import status_of


@pytest.mark.parametrize(("model", "family_in"), [
    ("gpt-4o", 2.5e-6), ("openai/gpt-4o-2024-08-06", 2.5e-6), ("gpt-4o-mini-2024-07-18", 0.15e-6),
    ("gpt-4.1-nano", 0.1e-6), ("o4-mini", 1.1e-6), ("anthropic/claude-3-5-sonnet-20241022", 3e-6),
    ("deepseek/deepseek-chat", 0.27e-6), ("text-embedding-3-small", 0.02e-6),
])
def test_builtin_prices_match_the_longest_family(model: str, family_in: float) -> None:
    price = builtin_price(model)
    assert price is not None and price.input == pytest.approx(family_in)


def test_unknown_models_have_no_price() -> None:
    assert builtin_price("gpt-4o1") is None and builtin_price("llama-3-70b") is None


def test_model_info_overrides_the_table_per_half() -> None:
    config = parse_config({"model_list": [
        {"model_name": "cheap", "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://x"},
         "model_info": {"input_cost_per_token": 1e-6}},
        {"model_name": "custom", "litellm_params": {"model": "openai/my-model", "api_base": "http://x"},
         "model_info": {"output_cost_per_token": 4e-6}},
        {"model_name": "free", "litellm_params": {"model": "openai/my-model", "api_base": "http://x"}},
    ]})
    prices = resolve_prices(config)
    assert prices["cheap"].input == 1e-6 and prices["cheap"].output == pytest.approx(10e-6)
    assert prices["custom"].cost(1000, 10) == pytest.approx(40e-6)
    assert "free" not in prices


def test_registry_renders_prometheus_text() -> None:
    registry = Registry()
    counter = registry.add(Counter("x_total", "Things.", ("model",)))
    hist = registry.add(Histogram("lat_seconds", "Latency.", ("model",), buckets=(0.1, 1.0)))
    counter.inc(('we"ird\\',), 2)
    hist.observe(("m",), 0.05)
    hist.observe(("m",), 5.0)
    text = registry.render().decode()
    assert '# TYPE x_total counter\nx_total{model="we\\"ird\\\\"} 2\n' in text
    assert 'lat_seconds_bucket{model="m",le="0.1"} 1\n' in text
    assert 'lat_seconds_bucket{model="m",le="1"} 1\n' in text
    assert 'lat_seconds_bucket{model="m",le="+Inf"} 2\n' in text
    assert 'lat_seconds_sum{model="m"} 5.05\nlat_seconds_count{model="m"} 2\n' in text
    assert hist.count(("m",)) == 2 and hist.distribution()[-1] == (float("inf"), 1)


def test_time_series_buckets_and_fills_gaps() -> None:
    series = TimeSeries(bucket_seconds=10, kept=6)
    series.current(1000.0).hits += 1
    series.current(1009.9).hits += 1
    series.current(1031.0).misses += 1
    rows = series.export(1035.0)
    assert [r["start"] for r in rows] == [980, 990, 1000, 1010, 1020, 1030]
    assert [r["hits"] for r in rows] == [0, 0, 2, 0, 0, 0] and rows[-1]["misses"] == 1
    for t in range(2000, 2100, 10):
        series.current(float(t))
    assert len(series.export(2095.0, span=30)) == 3 and len(series._buckets) == 6


def test_hit_counter_is_bounded_and_ranks() -> None:
    hits = HitCounter(max_keys=2)
    for key in ("a", "b", "b", "c"):
        hits.hit(key, "m", 1.0)
    assert hits.get("a") == 0 and hits.get("b") == 2
    assert [row[0] for row in hits.top(5)] == ["b", "c"]
    hits.clear("ns")
    assert hits.get("b") == 2
    hits.forget("b")
    assert hits.get("b") == 0


class _NoListing(MemoryBackend):
    def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        raise NotImplementedError


class _Broken:
    name = "broken"
    capabilities = Capabilities(native_ttl=False, shared=True, persistent=True)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        raise BackendUnavailable("down", "broken")

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        raise BackendUnavailable("down", "broken")


async def test_backends_that_cannot_list_are_501_and_failures_503() -> None:
    with pytest.raises(inventory.Unsupported) as info:
        await inventory.recent_entries(_NoListing(), None, 10, 100)
    assert status_of(type(info.value)).code == 501 and "cannot list" in info.value.message
    with pytest.raises(inventory.StoreUnavailable) as down:
        await inventory.ping(_Broken())  # type: ignore[arg-type]
    assert status_of(type(down.value)).code == 503
    with pytest.raises(inventory.StoreUnavailable):
        await inventory.entry(_Broken(), "k")  # type: ignore[arg-type]


async def test_listing_is_newest_first_and_skips_expired_and_foreign_values() -> None:
    backend = MemoryBackend()
    for i, key in enumerate(("ns:a", "ns:b", "c")):
        entry = CacheEntry(b"{}", created_at=100.0 + i, expires_at=1000.0, meta={"model": "m", "preview": key})
        await backend.set(key, encode_entry(entry), None)
    await backend.set("ns:old", encode_entry(CacheEntry(b"{}", created_at=1.0, expires_at=2.0)), None)
    await backend.set("ns:junk", b"not an entry", None)
    listing = await inventory.recent_entries(backend, None, 2, 100, hits=lambda k: 7, now=500.0)
    assert [e["key"] for e in listing["entries"]] == ["c", "ns:b"]
    assert listing["entries"][0]["ttl_left_s"] == 500.0 and listing["entries"][0]["hit_count"] == 7
    scoped = await inventory.recent_entries(backend, "ns", 10, 1, now=500.0)
    assert scoped["scanned"] == 1 and scoped["complete"] is False
    assert (await inventory.ping(backend))["status"] == "healthy"
    assert sorted([k async for k in backend.keys()]) == ["c", "ns:a", "ns:b", "ns:junk", "ns:old"]  # probe gone
