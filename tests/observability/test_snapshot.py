"""Pure rules of machine-wide metrics: how workers' snapshots add up (observability/snapshot.py)."""

from __future__ import annotations

from reprise.observability.metrics import Collected, Counter, Histogram, Registry
from reprise.observability.series import TimeSeries
from reprise.observability.snapshot import (
    Snapshot,
    export_metrics,
    merge_driver,
    merge_registry,
    merge_series,
    merge_top,
    workers_summary,
)


def worker_registry(requests: float, latencies: list[float], tasks: float, started: float) -> Registry:
    registry = Registry()
    counter = registry.add(Counter("req_total", "Requests.", ("model",)))
    counter.inc(("a",), requests)
    hist = registry.add(Histogram("lat_seconds", "Latency.", ("model",), buckets=(0.1, 1.0)))
    for value in latencies:
        hist.observe(("a",), value)
    registry.add(Collected("stores_total", "Stores.", "counter", ("backend",), lambda: [(("local",), 2.0)]))
    registry.add(Collected("tasks", "Tasks.", "gauge", (), lambda: [((), tasks)]))
    registry.add(Collected("start_seconds", "Start.", "gauge", (), lambda: [((), started)], merge="min"))
    return registry


def snapshot(registry: Registry, pid: int, final: bool = False, **extra: object) -> Snapshot:
    return Snapshot(pid=pid, started=100.0 + pid, published=200.0, final=final,
                    metrics=export_metrics(registry), **extra)  # type: ignore[arg-type]


def test_counters_and_histograms_add_up_over_every_worker_gauges_over_running_ones() -> None:
    one = worker_registry(3, [0.05, 5.0], tasks=10, started=50)
    two = worker_registry(4, [0.5], tasks=7, started=40)
    gone = worker_registry(5, [0.05], tasks=99, started=10)
    snaps = [snapshot(one, 1), snapshot(two, 2), snapshot(gone, 3, final=True)]
    merged = merge_registry(one, snaps, [True, True, False])
    text = merged.render().decode()
    assert 'req_total{model="a"} 12\n' in text  # 3 + 4 + 5: an exited worker's counts stay
    assert 'lat_seconds_bucket{model="a",le="0.1"} 2\n' in text
    assert 'lat_seconds_bucket{model="a",le="1"} 3\n' in text
    assert 'lat_seconds_bucket{model="a",le="+Inf"} 4\n' in text
    assert 'lat_seconds_count{model="a"} 4\n' in text
    assert 'stores_total{backend="local"} 6\n' in text  # collected counters: every worker
    assert "\ntasks 17\n" in text  # gauges: running workers only, summed
    assert "\nstart_seconds 40\n" in text  # ... or their minimum


def test_a_merged_scrape_has_only_the_answering_workers_metrics_and_label_arity() -> None:
    mine = worker_registry(1, [], tasks=1, started=1)
    odd = Snapshot(pid=9, started=0, published=0, metrics={
        "req_total": [[["a", "extra"], 100], [["b"], 2], [[3], 7]],  # wrong arity, fine, not a string
        "invented_total": [[[], 5]],
        "lat_seconds": [[["a"], [1, 2]]],  # wrong bucket count: ignored
    })
    text = merge_registry(mine, [snapshot(mine, 1), odd], [True, False]).render().decode()
    assert 'req_total{model="a"} 1\n' in text and 'req_total{model="b"} 2\n' in text
    assert "invented_total" not in text and "extra" not in text
    assert 'lat_seconds_count' not in text


def test_a_snapshot_round_trips_and_junk_is_not_one() -> None:
    snap = snapshot(worker_registry(2, [0.2], 1, 1), 7, driver={"stores": 1}, top=[["k", 3, "m", 5.0]])
    assert Snapshot.from_bytes(snap.to_bytes()) == snap
    assert Snapshot.from_bytes(b"{") is None and Snapshot.from_bytes(b'{"pid": 1}') is None


def test_driver_series_and_top_add_up() -> None:
    one, two = TimeSeries(), TimeSeries()
    one.current(1000.0).requests, two.current(1005.0).requests = 2, 3
    two.current(1010.0).hits = 4
    snaps = [
        Snapshot(pid=1, started=0, published=0, driver={"stores": 1, "coalesced": 2},
                 series=[list(row) for row in one.rows()],
                 top=[["k1", 5, "m", 10.0], ["k2", 1, "m", 3.0]]),
        Snapshot(pid=2, started=0, published=0, driver={"stores": 4, "coalesced": 0},
                 series=[list(row) for row in two.rows()], top=[["k2", 9, "m", 12.0]]),
    ]
    assert merge_driver(snaps) == {"stores": 5, "coalesced": 2}
    assert merge_driver([Snapshot(pid=1, started=0, published=0)]) is None
    series = merge_series(snaps, 1010.0, 30)
    assert [(b["start"], b["requests"], b["hits"]) for b in series] == [(990, 0, 0), (1000, 5, 0), (1010, 0, 4)]
    assert merge_top(snaps, 1) == [("k2", 10, "m", 12.0)]


def test_the_summary_says_which_workers_and_how_old() -> None:
    snaps = [Snapshot(pid=5, started=30, published=100.0), Snapshot(pid=3, started=20, published=99.2),
             Snapshot(pid=4, started=10, published=50.0, final=True)]
    assert workers_summary(snaps, [True, True, False], 100.0, 1.0) == {
        "running": 2, "exited": 1, "pids": [3, 5], "started_at": 20, "snapshot_age_s": 0.8,
        "publish_interval_s": 1.0}
