"""Wrong-answer budgets: Wilson intervals, calibration curves and the threshold for a budget.

Pure: no I/O except :func:`shipped_curve`, which reads a small JSON file shipped in this
package. A *curve* is measured by ``bench/semantic_quality.py`` on labelled pair sets:
for each retrieval threshold, the share of duplicate pairs served and the share of
non-duplicate pairs answered wrongly (one pair per scope). A user states how many wrong
answers they accept (``semantic_max_wrong_rate``); the threshold is the lowest one
whose measured wrong rate stays within that budget *in every calibration set* (not only
pooled: one easy set must not dilute another's traps), so as many duplicates as possible
are served. The budget is a statement about the *calibration* sets: on data unlike
them the real rate differs, which is why the bench reports it on sets left out of the
curve (leave-one-dataset-out) and ``reprise semantic eval`` measures it on yours.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources

#: The wrong-answer budget when ``semantic_max_wrong_rate`` is not set.
DEFAULT_MAX_WRONG_RATE = 0.02


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) for ``successes`` out of ``trials``.

    Chosen over the normal approximation because our rates sit near 0 (wrong answers),
    where that one gives negative lower bounds and too-narrow intervals.
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


#: A set's wrong rate counts towards the worst-set rate only with at least this many
#: non-duplicate pairs: one wrong answer in a set of nine is 11% and says little.
MIN_NON_DUPLICATES_PER_SET = 100


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """At ``threshold``: share of duplicates served, share of non-duplicates served (wrong),
    both pooled over the sets, and the highest wrong rate of any one set (``worst``; equal
    to ``wrong`` for a curve measured on one set)."""

    threshold: float
    served: float
    wrong: float
    worst: float | None = None

    @property
    def budget_rate(self) -> float:
        """The rate a budget is held to: the worst set's where known, else the pooled one."""
        return self.wrong if self.worst is None else max(self.wrong, self.worst)


@dataclass(frozen=True, slots=True)
class Curve:
    """A calibration curve of one embedding model, points sorted by threshold."""

    model: str
    points: tuple[CurvePoint, ...]
    sets: tuple[str, ...] = ()

    def threshold_for(self, max_wrong_rate: float) -> float:
        """The lowest threshold whose wrong rate is within ``max_wrong_rate`` in every set
        (and stays so above).

        "Stays so": the curve is noisy, so a threshold is taken only if every higher one
        also meets the budget; with no such point, the highest threshold measured.
        """
        chosen = self.points[-1].threshold if self.points else 1.0
        for point in reversed(self.points):
            if point.budget_rate > max_wrong_rate:
                break
            chosen = point.threshold
        return chosen

    def at(self, threshold: float) -> CurvePoint | None:
        """The measured point nearest ``threshold`` (None for an empty curve)."""
        if not self.points:
            return None
        return min(self.points, key=lambda p: abs(p.threshold - threshold))

    def to_json(self) -> str:
        rows = [json.dumps([round(p.threshold, 4), round(p.served, 4), round(p.wrong, 4)]
                           + ([] if p.worst is None else [round(p.worst, 4)])) for p in self.points]
        head = json.dumps({"model": self.model, "sets": list(self.sets)})[:-1]
        return head + ',\n "points": [\n  ' + ",\n  ".join(rows) + "\n ]\n}\n"  # one point a line

    @classmethod
    def from_json(cls, text: str) -> Curve:
        data = json.loads(text)
        points = tuple(sorted((CurvePoint(float(t), float(s), float(w), float(rest[0]) if rest else None)
                               for t, s, w, *rest in data["points"]), key=lambda p: p.threshold))
        return cls(str(data["model"]), points, tuple(data.get("sets", ())))


def curve_from_decisions(model: str, decisions: list[tuple[bool, float, bool]],
                         thresholds: list[float], sets: tuple[str, ...] = ()) -> Curve:
    """A curve from (same, cosine, passes the judge) per pair, over ``thresholds``."""
    dup = [(c, ok) for same, c, ok in decisions if same]
    non = [(c, ok) for same, c, ok in decisions if not same]
    points = []
    for t in sorted(thresholds):
        served = sum(ok and c >= t for c, ok in dup) / max(1, len(dup))
        wrong = sum(ok and c >= t for c, ok in non) / max(1, len(non))
        points.append(CurvePoint(t, served, wrong))
    return Curve(model, tuple(points), sets)


def curve_from_sets(model: str, decisions: dict[str, list[tuple[bool, float, bool]]],
                    thresholds: list[float]) -> Curve:
    """A pooled curve over named sets that also records, per threshold, the worst set's wrong
    rate (sets with at least :data:`MIN_NON_DUPLICATES_PER_SET` non-duplicates), which is
    what a budget is held to."""
    pooled = curve_from_decisions(model, [d for ds in decisions.values() for d in ds], thresholds, tuple(decisions))
    counted = [curve_from_decisions(model, ds, thresholds) for ds in decisions.values()
               if sum(not same for same, _, _ in ds) >= MIN_NON_DUPLICATES_PER_SET]
    if not counted:
        return pooled
    points = tuple(CurvePoint(p.threshold, p.served, p.wrong, max(c.points[i].wrong for c in counted))
                   for i, p in enumerate(pooled.points))
    return Curve(model, points, pooled.sets)


def shipped_curve(model: str) -> Curve | None:
    """The curve shipped for an embedded model (``reprise/semantic/curves/<model>.json``), or None."""
    try:
        text = (resources.files("reprise.semantic") / "curves" / f"{model}.json").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return None
    return Curve.from_json(text)
