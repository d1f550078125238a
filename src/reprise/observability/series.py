"""In-process history for the dashboard: 10-second buckets and per-key hit counts.

Prometheus keeps history for people who run it; the built-in dashboard must show
"hit rate over time" without it, so each process keeps the last hour in a ring of
fixed buckets (:class:`TimeSeries`). Both structures are bounded, per process and
lost on restart; with several workers the answering worker adds up the others' published
copies (:mod:`reprise.observability.snapshot`).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from operator import attrgetter
from typing import Any

BUCKET_SECONDS = 10
BUCKETS_KEPT = 360  # one hour


@dataclass(slots=True)
class Bucket:
    """What happened during one bucket of time (``start`` is Unix seconds)."""

    start: int
    requests: int = 0
    hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    bypasses: int = 0
    saved_tokens: int = 0
    saved_usd: float = 0.0
    saved_seconds: float = 0.0


BUCKET_FIELDS = tuple(f.name for f in fields(Bucket))
_bucket_values = attrgetter(*BUCKET_FIELDS)


class TimeSeries:
    """A ring of :class:`Bucket`; recording touches only the newest bucket."""

    def __init__(self, bucket_seconds: int = BUCKET_SECONDS, kept: int = BUCKETS_KEPT) -> None:
        self.bucket_seconds = bucket_seconds
        self.kept = kept
        self._buckets: list[Bucket] = []

    def current(self, now: float) -> Bucket:
        """The bucket ``now`` falls into, created (and the oldest dropped) as time moves on."""
        buckets = self._buckets
        if buckets and buckets[-1].start <= now < buckets[-1].start + self.bucket_seconds:
            return buckets[-1]
        start = int(now // self.bucket_seconds) * self.bucket_seconds
        if buckets and buckets[-1].start == start:
            return buckets[-1]
        bucket = Bucket(start)
        buckets.append(bucket)
        if len(buckets) > self.kept:
            del buckets[: len(buckets) - self.kept]
        return bucket

    def rows(self) -> list[tuple[float, ...]]:
        """The kept buckets (each had a request) as value tuples in :data:`BUCKET_FIELDS` order:
        a copy, cheap to take and to serialise (a worker publishes it every second)."""
        return [_bucket_values(bucket) for bucket in self._buckets]

    def add(self, row: tuple[float, ...] | list[float]) -> None:
        """Add a :meth:`rows` row of another series into this one (rows oldest first)."""
        bucket = self.current(row[0])
        for name, value in zip(BUCKET_FIELDS[1:], row[1:], strict=True):
            setattr(bucket, name, getattr(bucket, name) + value)

    def export(self, now: float, span: int | None = None) -> list[dict[str, Any]]:
        """Buckets of the last ``span`` seconds (default: all kept), empty ones filled in,
        oldest first, so a chart can draw them at even spacing."""
        step = self.bucket_seconds
        last = int(now // step) * step
        count = self.kept if span is None else max(1, min(self.kept, span // step))
        by_start = {b.start: b for b in self._buckets}
        starts = range(last - (count - 1) * step, last + step, step)
        return [asdict(by_start.get(start) or Bucket(start)) for start in starts]


class HitCounter:
    """Hits per stored key in this process, the ``max_keys`` most recently hit kept.

    A shared store (disk, Redis) cannot count reads without a write per hit, so the
    count is this process's view since it started; it is shown as such.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._counts: OrderedDict[str, list[Any]] = OrderedDict()  # key -> [hits, model, last hit]

    def hit(self, key: str, model: str, now: float, count: int = 1) -> None:
        row = self._counts.get(key)
        if row is None:
            self._counts[key] = [count, model, now]
            if len(self._counts) > self.max_keys:
                self._counts.popitem(last=False)
            return
        row[0] += count
        row[2] = now
        self._counts.move_to_end(key)

    def get(self, key: str) -> int:
        row = self._counts.get(key)
        return int(row[0]) if row else 0

    def forget(self, key: str) -> None:
        self._counts.pop(key, None)

    def clear(self, namespace: str | None = None) -> None:
        if namespace is None:
            self._counts.clear()
            return
        prefix = f"{namespace}:"
        for key in [k for k in self._counts if k.startswith(prefix)]:
            del self._counts[key]

    def top(self, n: int) -> list[tuple[str, int, str, float]]:
        """The ``n`` most hit keys: (key, hits, model, last hit time), most hits first."""
        rows = heapq.nlargest(n, self._counts.items(), key=lambda item: item[1][0])  # stable: as sorted()
        return [(key, int(row[0]), str(row[1]), float(row[2])) for key, row in rows]
