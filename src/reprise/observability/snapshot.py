"""Machine-wide numbers from per-worker snapshots: what a worker publishes, how they add up.

With ``reprise serve --workers N`` every worker counts the requests it served; a scrape
reaches one worker. So each worker publishes a :class:`Snapshot` of its counts (see
:mod:`reprise.observability.workers` for where and when) and whichever worker answers
``/metrics`` or ``/cache/stats`` adds its own fresh snapshot to the others' latest:

* counters and histogram buckets add up over every worker that ever ran in this server,
  exited ones included, so a machine-wide counter never goes backwards;
* gauges (start time, event-loop tasks) combine over running workers only, by each
  metric's ``merge`` rule (sum or min);
* the dashboard's history adds up per time bucket, the top prompts per key (from each
  worker's :data:`TOP_KEPT` most hit keys, so a key below that in every worker is missed).

Only metric names and label arity the answering worker itself registers are merged, so
the merged label set is the union of the workers' sets, each bounded by the same config.
Pure: no files, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.observability.metrics import Collected, Counter, Histogram, Labels, Registry
from reprise.observability.series import BUCKET_FIELDS, TimeSeries

TOP_KEPT = 100
"""Most hit keys each worker publishes (``/cache/stats?top=`` allows at most this)."""

Rows = list[list[Any]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One worker's counts at ``published`` (Unix seconds); ``final`` once it has shut down."""

    pid: int
    started: float
    published: float
    final: bool = False
    metrics: dict[str, Rows] = field(default_factory=dict)
    """Metric name -> [[label values], value] (a histogram's value: its bucket counts and sum)."""
    driver: dict[str, int] | None = None
    series: Rows = field(default_factory=list)
    """The dashboard's kept time buckets (:meth:`TimeSeries.rows`)."""
    top: Rows = field(default_factory=list)
    """[key, hits, model, last hit] of the worker's most hit keys."""

    def to_bytes(self) -> bytes:
        return orjson.dumps(self)  # orjson serialises a dataclass natively (no asdict deep copy)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Snapshot | None:
        """The snapshot in ``raw``; None when it is not one (a foreign or damaged file)."""
        try:
            data = orjson.loads(raw)
            return cls(pid=int(data["pid"]), started=float(data["started"]), published=float(data["published"]),
                       final=bool(data["final"]), metrics=dict(data["metrics"]), driver=data["driver"],
                       series=list(data["series"]), top=list(data["top"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def export_metrics(registry: Registry) -> dict[str, Rows]:
    """Every metric's current rows, in a form :func:`merge_registry` reads back."""
    out: dict[str, Rows] = {}
    for metric in registry.metrics:
        if isinstance(metric, Counter):
            out[metric.name] = [[list(labels), value] for labels, value in metric.values.items()]
        elif isinstance(metric, Histogram):
            out[metric.name] = [[list(labels), list(state)] for labels, state in metric.values.items()]
        else:
            out[metric.name] = [[list(labels), value] for labels, value in metric.read()]
    return out


def _rows(snapshot: Snapshot, name: str, arity: int) -> list[tuple[Labels, Any]]:
    out = []
    for row in snapshot.metrics.get(name, ()):
        labels = row[0]
        if isinstance(labels, list) and len(labels) == arity and all(isinstance(v, str) for v in labels):
            out.append((tuple(labels), row[1]))
    return out


def merge_registry(template: Registry, snapshots: Sequence[Snapshot], live: Sequence[bool]) -> Registry:
    """A registry of ``template``'s metrics holding the machine's values (rules in the module doc)."""
    merged = Registry()
    for metric in template.metrics:
        arity = len(metric.label_names)
        if isinstance(metric, Counter):
            counter = merged.add(Counter(metric.name, metric.help, metric.label_names))
            for snapshot in snapshots:
                for labels, value in _rows(snapshot, metric.name, arity):
                    counter.inc(labels, float(value))
        elif isinstance(metric, Histogram):
            hist = merged.add(Histogram(metric.name, metric.help, metric.label_names, metric.buckets))
            width = len(metric.buckets) + 2
            for snapshot in snapshots:
                for labels, state in _rows(snapshot, metric.name, arity):
                    if isinstance(state, list) and len(state) == width:
                        total = hist.values.setdefault(labels, [0.0] * width)
                        for i, n in enumerate(state):
                            total[i] += float(n)
        else:
            merged.add(_merge_collected(metric, snapshots, live))
    return merged


def _merge_collected(metric: Collected, snapshots: Sequence[Snapshot], live: Sequence[bool]) -> Collected:
    counter = metric.kind == "counter"
    values: dict[Labels, float] = {}
    for snapshot, running in zip(snapshots, live, strict=True):
        if not (counter or running):
            continue
        for labels, value in _rows(snapshot, metric.name, len(metric.label_names)):
            seen = values.get(labels)
            if seen is None:
                values[labels] = float(value)
            elif counter or metric.merge == "sum":
                values[labels] = seen + float(value)
            else:
                values[labels] = min(seen, float(value))
    rows = sorted(values.items())
    return Collected(metric.name, metric.help, metric.kind, metric.label_names, lambda: rows, metric.merge)


def merge_driver(snapshots: Sequence[Snapshot]) -> dict[str, int] | None:
    """The cache driver's counters summed over the workers (None without a cache)."""
    drivers = [s.driver for s in snapshots if s.driver is not None]
    if not drivers:
        return None
    total: dict[str, int] = {}
    for driver in drivers:
        for name, value in driver.items():
            total[name] = total.get(name, 0) + int(value)
    return total


def merge_series(snapshots: Sequence[Snapshot], now: float, span: int) -> list[dict[str, Any]]:
    """The dashboard's history of the machine: each time bucket summed over the workers."""
    series = TimeSeries()
    width = len(BUCKET_FIELDS)
    rows = [row for s in snapshots for row in s.series if isinstance(row, list | tuple) and len(row) == width]
    for row in sorted(rows, key=lambda row: row[0]):
        series.add(row)
    return series.export(now, span)


def merge_top(snapshots: Sequence[Snapshot], n: int) -> list[tuple[str, int, str, float]]:
    """The ``n`` most hit keys of the machine: (key, hits, model, last hit), most hits first."""
    by_key: dict[str, list[Any]] = {}
    for snapshot in snapshots:
        for key, hits, model, last_hit in snapshot.top:
            row = by_key.get(key)
            if row is None:
                by_key[key] = [int(hits), str(model), float(last_hit)]
            else:
                row[0] += int(hits)
                row[2] = max(row[2], float(last_hit))
    rows = sorted(by_key.items(), key=lambda item: item[1][0], reverse=True)[:n]
    return [(key, row[0], row[1], row[2]) for key, row in rows]


def workers_summary(snapshots: Sequence[Snapshot], live: Sequence[bool], now: float,
                    interval: float | None) -> dict[str, Any]:
    """What a machine-wide answer covers: running and exited workers, and how old its oldest part is."""
    running = [s for s, alive in zip(snapshots, live, strict=True) if alive]
    return {
        "running": len(running),
        "exited": len(snapshots) - len(running),
        "pids": sorted(s.pid for s in running),
        "started_at": min((s.started for s in running), default=None),
        "snapshot_age_s": round(max((max(0.0, now - s.published) for s in running), default=0.0), 3),
        "publish_interval_s": interval,
    }


def add_worker_gauges(registry: Registry, summary: dict[str, Any]) -> None:
    """``reprise_workers`` and ``reprise_metrics_snapshot_age_seconds``: what a scrape covers."""
    running, age = float(summary["running"]), float(summary["snapshot_age_s"])
    registry.add(Collected("reprise_workers", "Running worker processes whose counts this scrape includes.",
                           "gauge", (), lambda: [((), running)]))
    registry.add(Collected("reprise_metrics_snapshot_age_seconds",
                           "Age of the oldest worker snapshot in this scrape (at most about the publish interval).",
                           "gauge", (), lambda: [((), age)]))
