"""Turning one run's measurements into a Markdown report with PASS/FAIL checks.

Why ratios: absolute numbers depend on the machine; a ratio against a baseline
measured in the same run (LiteLLM, a trivial ASGI app, the bare upstream) is
what stays comparable across machines and over time.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.load import Latency, WrkResult


@dataclass
class TargetResult:
    """Everything measured on one target; ``None`` where it was not measured."""

    name: str
    startup_s: float | None = None
    idle_rss_mb: float | None = None
    hit_verified: bool | None = None
    hit: Latency | None = None
    stream_hit: Latency | None = None
    stream_hit_verified: bool | None = None
    wrk: WrkResult | None = None  # the best round
    wrk_rounds: list[float] = field(default_factory=list)  # req/s of every round
    upstream_calls_during_load: int | None = None
    miss: Latency | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One target from the brief: ``value <op> limit``; ``None`` when it could not be measured."""

    name: str
    value: float | None
    limit: float
    op: Callable[[float, float], bool]
    unit: str

    @property
    def verdict(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "n/a"
        return "PASS" if self.op(self.value, self.limit) else "FAIL"

    @property
    def target(self) -> str:
        symbol = "<=" if self.op is operator.le else ">="
        return f"{symbol} {_num(self.limit)}{self.unit}"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _rps(result: TargetResult | None) -> float | None:
    return result.wrk.requests_per_s if result and result.wrk else None


def _miss_p50(result: TargetResult | None) -> float | None:
    return result.miss.p50_ms if result and result.miss else None


def make_checks(results: dict[str, TargetResult]) -> list[Check]:
    """The targets of the brief, all about Reprise, each against a baseline of this run."""
    reprise = results.get("reprise")
    litellm, trivial = results.get("litellm"), results.get("trivial-asgi")
    reprise_miss, direct_miss = _miss_p50(reprise), _miss_p50(results.get("stub (direct)"))
    overhead = None
    if reprise_miss is not None and direct_miss is not None:
        overhead = reprise_miss - direct_miss
    hit_p50 = reprise.hit.p50_ms if reprise and reprise.hit else None
    le, ge = operator.le, operator.ge
    return [
        Check("hit latency p50 at c=1", hit_p50, 1.0, le, " ms"),
        Check("hit throughput Reprise / LiteLLM", _ratio(_rps(reprise), _rps(litellm)), 30.0, ge, "x"),
        Check("hit throughput Reprise / trivial ASGI", _ratio(_rps(reprise), _rps(trivial)), 0.5, ge, "x"),
        Check("miss overhead p50 (Reprise - direct)", overhead, 2.0, le, " ms"),
        Check("idle memory (RSS)", reprise.idle_rss_mb if reprise else None, 100.0, le, " MB"),
        Check("start-up (spawn to ready)", reprise.startup_s if reprise else None, 1.5, le, " s"),
    ]


ROWS: list[tuple[str, Callable[[TargetResult], str]]] = [
    ("start-up (s)", lambda r: _num(r.startup_s)),
    ("idle RSS (MB)", lambda r: _num(r.idle_rss_mb, 1)),
    ("hit throughput (req/s, wrk, best round)", lambda r: _num(r.wrk.requests_per_s, 0) if r.wrk else "-"),
    ("hit throughput, every round", lambda r: ", ".join(_num(x, 0) for x in r.wrk_rounds) or "-"),
    ("wrk latency p50 / p99 (ms)", lambda r: f"{_num(r.wrk.p50_ms)} / {_num(r.wrk.p99_ms)}" if r.wrk else "-"),
    ("wrk non-2xx + socket errors", lambda r: str(r.wrk.non_2xx + r.wrk.socket_errors) if r.wrk else "-"),
    (
        "upstream calls during hit load",
        lambda r: "-" if r.upstream_calls_during_load is None else str(r.upstream_calls_during_load),
    ),
    (
        "hit latency c=1 p50 / p90 / p99 (ms)",
        lambda r: f"{_num(r.hit.p50_ms, 3)} / {_num(r.hit.p90_ms, 3)} / {_num(r.hit.p99_ms, 3)}" if r.hit else "-",
    ),
    ("second request served from cache", lambda r: _yes_no(r.hit_verified)),
    (
        "streaming hit p50 / p99 (ms)",
        lambda r: f"{_num(r.stream_hit.p50_ms, 3)} / {_num(r.stream_hit.p99_ms, 3)}" if r.stream_hit else "-",
    ),
    ("second stream served from cache", lambda r: _yes_no(r.stream_hit_verified)),
    ("miss latency p50 / p90 (ms)", lambda r: f"{_num(r.miss.p50_ms)} / {_num(r.miss.p90_ms)}" if r.miss else "-"),
]


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def render(results: dict[str, TargetResult], header: Sequence[str]) -> str:
    names = list(results)
    lines = ["# Reprise benchmark", "", *header, "", "## Measurements", ""]
    lines.append("| metric | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(results[n]) for n in names) + " |")
    overheads = _miss_overheads(results)
    if overheads:
        lines.append("| miss overhead vs direct, p50 (ms) | " + " | ".join(overheads.get(n, "-") for n in names) + " |")
    lines += ["", "## Checks (ratios from this run)", "", "| check | measured | target | result |", "|---|---|---|---|"]
    for check in make_checks(results):
        lines.append(
            f"| {check.name} | {_num(check.value)}{check.unit if check.value is not None else ''}"
            f" | {check.target} | {check.verdict} |"
        )
    problems = [(r.name, r.error) for r in results.values() if r.error]
    notes = [(r.name, n) for r in results.values() for n in r.notes]
    if problems or notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{name}** failed: {error}" for name, error in problems]
        lines += [f"- {name}: {note}" for name, note in notes]
    return "\n".join(lines) + "\n"


def _miss_overheads(results: dict[str, TargetResult]) -> dict[str, str]:
    direct = results.get("stub (direct)")
    if direct is None or direct.miss is None:
        return {}
    return {
        name: _num(r.miss.p50_ms - direct.miss.p50_ms)
        for name, r in results.items()
        if r.miss is not None and r is not direct
    }
