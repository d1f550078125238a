"""A small Prometheus registry: labelled counters, histograms and scrape-time values.

Why not ``prometheus_client``: it would be the gateway's only dependency that
the hot path touches, its default registry is a module-level global (the house
style keeps none), and its multiprocess mode needs a shared directory. What the
gateway needs is small: float increments keyed by a tuple of label values, and
the text exposition format
(https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format).
Recording is a dict lookup and an add, with no locks: everything runs on one
event loop, so each update completes between two ``await`` points.

Values are per process; with ``--workers N`` a scrape renders the machine's sum,
merged from every worker's snapshot (:mod:`reprise.observability.snapshot`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Labels = tuple[str, ...]

#: Server-time buckets (seconds): a hit is ~0.1-1 ms, a provider call 0.1-60 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Cosine similarity of semantic hits: the interesting range is near the threshold.
SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 1.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels_text(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Counter:
    """A monotonically increasing value per label tuple (name should end ``_total``)."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Labels = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        values = self.values
        values[labels] = values.get(labels, 0.0) + amount

    def get(self, labels: Labels = ()) -> float:
        return self.values.get(labels, 0.0)

    def total(self) -> float:
        return sum(self.values.values())

    def samples(self) -> Iterator[str]:
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels_text(self.label_names, labels)} {_number(value)}"


class Histogram:
    """Observations counted into fixed buckets per label tuple, with their sum."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Labels = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help_text
        self.label_names = labels
        self.buckets = buckets
        # labels -> [count in bucket 0 .. count in bucket n-1, count above the last, sum]
        self.values: dict[Labels, list[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        state = self.values.get(labels)
        if state is None:
            state = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        state[bisect_left(self.buckets, value)] += 1
        state[-1] += value

    def observe_many(self, labels: Labels, values: list[float]) -> None:
        """:meth:`observe` of each of ``values``, the label's row looked up once."""
        state = self.values.get(labels)
        if state is None:
            state = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        buckets = self.buckets
        for value in values:
            state[bisect_left(buckets, value)] += 1
        state[-1] += sum(values)

    def count(self, labels: Labels | None = None) -> int:
        rows = self.values.values() if labels is None else [self.values.get(labels, [0.0])]
        return int(sum(sum(row[:-1]) for row in rows))

    def sum(self, labels: Labels | None = None) -> float:
        rows = self.values.values() if labels is None else [self.values.get(labels, [0.0, 0.0])]
        return sum(row[-1] for row in rows)

    def distribution(self) -> list[tuple[float, int]]:
        """(upper bound, count) per bucket over all labels, not cumulative; +inf last."""
        counts = [0.0] * (len(self.buckets) + 1)
        for row in self.values.values():
            for i, n in enumerate(row[:-1]):
                counts[i] += n
        return [(b, int(n)) for b, n in zip((*self.buckets, float("inf")), counts, strict=True)]

    def samples(self) -> Iterator[str]:
        for labels, state in sorted(self.values.items()):
            running = 0.0
            for bound, n in zip((*self.buckets, float("inf")), state[:-1], strict=True):
                running += n
                le = 'le="+Inf"' if bound == float("inf") else f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels_text(self.label_names, labels, le)} {_number(running)}"
            text = _labels_text(self.label_names, labels)
            yield f"{self.name}_sum{text} {_number(state[-1])}"
            yield f"{self.name}_count{text} {_number(running)}"


class Collected:
    """A value read at scrape time (driver counters, uptime) rather than pushed.

    ``merge`` says how the workers of one machine combine: a counter always adds up
    (every worker's, exited ones too); a gauge takes the ``"sum"`` or the ``"min"`` of
    the workers still running.
    """

    def __init__(self, name: str, help_text: str, kind: str, labels: Labels,
                 read: Callable[[], Iterable[tuple[Labels, float]]], merge: str = "sum") -> None:
        self.name = name
        self.help = help_text
        self.kind = kind
        self.label_names = labels
        self.read = read
        self.merge = merge

    def samples(self) -> Iterator[str]:
        for labels, value in self.read():
            yield f"{self.name}{_labels_text(self.label_names, labels)} {_number(value)}"


Metric = Counter | Histogram | Collected
M = TypeVar("M", Counter, Histogram, Collected)


class Registry:
    """The metrics of one gateway process, rendered in registration order."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self.metrics:
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        lines.append("")
        return "\n".join(lines).encode()


#: The content type Prometheus expects for the text format.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
