"""Semantic cache quality across independent labelled sets, tuned on some, reported on others.

    python bench/semantic_quality.py [--budget 0.02] [--write-curves] [--out FILE.md]

Sets (each ``{"a", "b", "same"}`` pairs; see docs/semantic.md for sources and licences):

* ``fow-en``: fow-cache 0.1.0 (PyPI, CC-BY-4.0), 600 English question pairs (paraphrases and
  near repeats; negation, entity, number/date and scope traps). The false-hit guards were
  written by reading its failures: it is *tuned-on* data for the guards whatever the split.
* ``pawsx-zh``: PAWS-X Chinese dev split, 2,000 pairs, adversarial word-order/role swaps,
  read from ``../shared/data/pawsx-zh-dev.jsonl`` (not copied into the repo).
* ``ours-zh``: our 16 Chinese pairs (``bench/data/semantic_zh_pairs.jsonl``).
* ``kor-qpair``: 2,000 Korean question pairs (1,000 duplicates, 1,000 not; identical pairs
  left out), sampled from songys/Question_pair (MIT, see ``bench/data/README.md``): everyday
  chatbot questions and their hand-written rewordings; non-duplicates are neighbouring titles
  of one topic. Added 2026-12-04; no threshold, guard or stage was ever tuned on it before.

Judges compared (all through :meth:`reprise.semantic.matcher.Matcher.judge`):
``plain`` cosine only (the default since issue 13); ``guards`` + false-hit guards;
``guards+verifier`` + e5 verifier below 0.85 (the default before issue 13); ``two-model``
USE cosine and e5 cosine both above their thresholds (no word lists), the e5 cut-off
tuned like the threshold; ``order-veto``: plain plus a refusal when two tokens both prompts
share appear in opposite order (no word list, no tuned parameter); ``learned-cheap`` and
``learned+e5``: a logistic regression over :mod:`reprise.semantic.pair_features` (USE
cosine, unordered vs ordered overlap, LCS, discordance, length ratio, digits), the second
with e5's cosine too, fitted and its cut tuned on the other sets (per scope only). The
stages are compared with plain cosine at equal wrong rate on the held-out set, with a
95% paired bootstrap interval (item 3's test). None of order-veto and learned is in the
gateway: none passed that test on every held-out set (docs/semantic.md).

Settings: one pair per scope, and a full index (every ``a`` of every set in one scope, then
every ``b`` asked through top-k). Leave-one-dataset-out: for each set, each judge's threshold
is the lowest whose wrong rate is within the budget in *each* of the other sets (those with at
least 100 non-duplicates; the shipped curve's rule) and stays so above; the set's figures at
that threshold are its result. Intervals: Wilson, 95%.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from reprise.core.scope import semantic_query
from reprise.embeddings.base import load_embedder
from reprise.semantic.calibration import Curve, curve_from_decisions, curve_from_sets
from reprise.semantic.evaluate import LabelledPair, MemoEmbedder, Outcome, full_index, pair_decisions, per_scope
from reprise.semantic.matcher import Matcher
from reprise.semantic.pair_features import discordance, pair_features, tokens
from reprise.semantic.settings import default_settings

HERE = Path(__file__).resolve().parent
ZH = HERE / "data" / "semantic_zh_pairs.jsonl"
KOR = HERE / "data" / "kor-qpair.jsonl"
PAWSX = HERE.parent.parent / "shared" / "data" / "pawsx-zh-dev.jsonl"
CURVES = HERE.parent / "src" / "reprise" / "semantic" / "curves"
THRESHOLDS = [round(0.50 + 0.01 * i, 2) for i in range(50)] + [0.995, 0.999, 1.0]
SCORE_CUTS = [round(0.01 * i, 2) for i in range(100)] + [0.995, 0.999, 1.0]
E5_CUTS = [0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]
MODEL, VERIFIER = "use-multilingual-v3", "multilingual-e5-small"
Decisions = list[tuple[bool, float, bool]]


def load_sets() -> dict[str, list[LabelledPair]]:
    from fow_cache.data import load_questions

    fow = [LabelledPair(p["a"], p["b"], bool(p["same_answer"]) and not p.get("ambiguous"))
           for p in load_questions()]
    ours = [json.loads(line) for line in ZH.read_text().splitlines() if line.strip()]
    sets = {"fow-en": fow,
            "ours-zh": [LabelledPair(p["a"], p["b"], bool(p["same_answer"])) for p in ours]}
    sets["kor-qpair"] = [LabelledPair(**json.loads(line)) for line in KOR.read_text().splitlines() if line]
    if PAWSX.exists():
        sets["pawsx-zh"] = [LabelledPair(**json.loads(line)) for line in PAWSX.read_text().splitlines() if line]
    else:
        print(f"(missing {PAWSX}: pawsx-zh left out)", file=sys.stderr)
    return sets


class OrderVetoMatcher(Matcher):
    """The plain judge plus one structural veto, measured here and not shipped: a candidate
    is refused when any two tokens both prompts share appear in opposite order
    (:func:`reprise.semantic.pair_features.discordance` > 0): "A of B" vs "B of A"."""

    def judge(self, cached: str, new: str, score: float) -> str | None:
        reason = super().judge(cached, new, score)
        if reason is None and discordance(tokens(cached), tokens(new)) > 0:
            return "order"
        return reason


class Judges:
    """One matcher per judge over memoised embedders; e5 cosines for the two-model judge."""

    def __init__(self) -> None:
        self.use = MemoEmbedder(load_embedder(MODEL))
        self.e5 = MemoEmbedder(load_embedder(VERIFIER))
        self.settings = {
            "plain": default_settings(MODEL, 0.0),
            "guards": default_settings(MODEL, 0.0, guards=True),
            "guards+verifier": default_settings(MODEL, 0.0, guards=True, verified=True),
            "order-veto": default_settings(MODEL, 0.0),
        }

    def matcher(self, judge: str, threshold: float) -> Matcher:
        kind = OrderVetoMatcher if judge == "order-veto" else Matcher
        return kind(self.use, replace(self.settings[judge], threshold=threshold), self.e5)

    def decisions(self, judge: str, pairs: list[LabelledPair]) -> Decisions:
        if judge == "order-veto":  # pair_decisions builds a plain Matcher: add the veto here
            return [(same, c, ok and discordance(tokens(p.a), tokens(p.b)) == 0)
                    for p, (same, c, ok) in zip(pairs, self.decisions("plain", pairs), strict=True)]
        return pair_decisions(self.matcher(judge, 0.0), pairs)

    def e5_cosines(self, pairs: list[LabelledPair]) -> list[float]:
        rows = self.e5.embed([p.a for p in pairs] + [p.b for p in pairs])
        n = len(pairs)
        return [float(rows[i] @ rows[n + i]) for i in range(n)]


def others(parts: dict[str, Decisions], leave_out: str) -> dict[str, Decisions]:
    return {name: ds for name, ds in parts.items() if name != leave_out}


def tune(parts: dict[str, Decisions], budget: float, cuts: list[float] = THRESHOLDS) -> float:
    """The lowest threshold within ``budget`` in every tuning set (the shipped curve's rule)."""
    return curve_from_sets(MODEL, parts, cuts).threshold_for(budget)


def tune_two_model(plain: dict[str, Decisions], e5: dict[str, list[float]],
                   budget: float) -> tuple[float, float, float]:
    """(threshold, e5 cut, served on the tuning data): the pair serving most within budget."""
    best = (1.0, 1.0, -1.0)
    for cut in E5_CUTS:
        parts = {n: [(same, c, v >= cut) for (same, c, _), v in zip(ds, e5[n], strict=True)]
                 for n, ds in plain.items()}
        t = tune(parts, budget)
        served = per_scope([d for ds in parts.values() for d in ds], t).rate("served")[0]
        if served > best[2]:
            best = (t, cut, served)
    return best


def features(pairs: list[LabelledPair], plain: Decisions, e5: list[float] | None) -> np.ndarray:
    """Per pair: :func:`reprise.semantic.pair_features.pair_features` (USE cosine, unordered vs
    ordered overlap, LCS, discordance of shared tokens, length ratio, digits), plus e5's cosine."""
    rows = []
    for i, (p, (_, c, _)) in enumerate(zip(pairs, plain, strict=True)):
        row = list(pair_features(p.a, p.b, c))
        rows.append(row if e5 is None else [*row, e5[i]])
    return np.array(rows, dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 3000,
                 l2: float = 1e-3) -> Callable[[np.ndarray], np.ndarray]:
    """A plain L2 logistic regression (gradient descent on standardised features)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / std])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        w -= 0.5 * (z.T @ (p - y) / len(y) + l2 * w)
    return lambda q: 1 / (1 + np.exp(-np.hstack([np.ones((len(q), 1)), (q - mean) / std]) @ w))


LEARNED = {"learned-cheap": False, "learned+e5": True}


def learned_row(sets: dict[str, list[LabelledPair]], decisions: dict[str, dict[str, Decisions]],
                e5: dict[str, list[float]], name: str, budget: float, with_e5: bool) -> tuple[float, Decisions]:
    """Item 3's learned pair classifier, fitted and its cut tuned on the other sets only.

    Returns (score cut, the held-out set's decisions as (same, score, True)), so the cut
    applies to it as a threshold applies to cosines.
    """
    feats = {n: features(sets[n], decisions["plain"][n], e5[n] if with_e5 else None) for n in sets}
    labels = {n: np.array([p.same for p in sets[n]], dtype=np.float64) for n in sets}
    rest = [n for n in sets if n != name]
    model = fit_logistic(np.vstack([feats[n] for n in rest]), np.concatenate([labels[n] for n in rest]))
    tuning = {n: [(bool(y), float(sc), True) for y, sc in zip(labels[n], model(feats[n]), strict=True)]
              for n in rest}
    cut = tune(tuning, budget, SCORE_CUTS)
    return cut, [(p.same, float(sc), True) for p, sc in zip(sets[name], model(feats[name]), strict=True)]


def versus_plain(stage: Decisions, cut: float, plain: Decisions, rounds: int = 1000) -> str:
    """Item 3's test on a held-out set: the stage at its tuned cut against plain cosine at the
    lowest threshold whose wrong rate *on this very set* is no higher than the stage's (an
    oracle threshold, which favours plain). The difference in duplicates served, with a 95%
    paired bootstrap interval over the set's pairs."""
    wrong = per_scope(stage, cut).rate("wrong")[0]
    t = curve_from_decisions(MODEL, plain, THRESHOLDS).threshold_for(wrong)
    ours = np.array([same and ok and s >= cut for same, s, ok in stage], dtype=np.float64)
    theirs = np.array([same and ok and c >= t for same, c, ok in plain], dtype=np.float64)
    dup = np.array([same for same, _, _ in stage])
    rng = np.random.default_rng(13)
    diffs = []
    for _ in range(rounds):
        pick = rng.integers(0, len(stage), len(stage))
        n = max(1, int(dup[pick].sum()))
        diffs.append((ours[pick].sum() - theirs[pick].sum()) / n)
    point = (ours.sum() - theirs.sum()) / max(1, int(dup.sum()))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return (f"{point * 100:+.1f} [{low * 100:+.1f} to {high * 100:+.1f}] points "
            f"(plain at {t:.3g}: {theirs.sum() / max(1, dup.sum()):.1%} served)")


def cell(outcome: Outcome, name: str) -> str:
    rate, low, high = outcome.rate(name)
    return f"{rate:.1%} [{low:.1%}-{high:.1%}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.02, help="wrong-answer budget to tune for")
    parser.add_argument("--write-curves", action="store_true", help="write the shipped calibration curves")
    parser.add_argument("--skip-full-index", action="store_true")
    parser.add_argument("--embeddings", type=Path, help="an .npz cache of embeddings, read and written "
                        "(a rerun then takes seconds)")
    args = parser.parse_args(argv)
    try:
        sets = load_sets()
    except ImportError:
        print("needs the labelled data: pip install 'reprise[semantic-bench]'", file=sys.stderr)
        return 2
    started = time.perf_counter()
    judges = Judges()
    if args.embeddings:
        judges.use.load(args.embeddings.with_suffix(".use.npz"))
        judges.e5.load(args.embeddings.with_suffix(".e5.npz"))
    decisions = {j: {name: judges.decisions(j, pairs) for name, pairs in sets.items()} for j in judges.settings}
    e5 = {name: judges.e5_cosines(pairs) for name, pairs in sets.items()}
    stored = [p.a for pairs in sets.values() for p in pairs]
    print(f"# semantic quality suite: {', '.join(f'{k} {len(v)}' for k, v in sets.items())} pairs; "
          f"budget {args.budget:.0%}; full index {len(set(stored))} prompts in one scope\n")
    leave_one_out(judges, sets, decisions, e5, stored, args)
    equal_wrong(judges, sets, decisions, e5, args.budget)
    seed(judges)
    multi_turn(judges)
    if args.embeddings:
        judges.use.save(args.embeddings.with_suffix(".use.npz"))
        judges.e5.save(args.embeddings.with_suffix(".e5.npz"))
    if args.write_curves:
        write_curves(decisions, e5, tuple(sets))
    print(f"\n(elapsed {time.perf_counter() - started:.0f} s)")
    return 0


def leave_one_out(judges: Judges, sets: dict[str, list[LabelledPair]], decisions: dict[str, dict[str, Decisions]],
                  e5: dict[str, list[float]], stored: list[str], args: argparse.Namespace) -> None:
    print("## Leave-one-dataset-out: threshold tuned on the other sets, figures on this set\n")
    print("| set (reported on) | judge | tuned on | threshold | dups served | non-dups wrong "
          "| full index: dups served | full index: wrong per 100 hits |")
    print("|---|---|---|---|---|---|---|---|")
    comparisons: list[str] = []
    for name, pairs in sets.items():
        tuned_on = "+".join(n for n in sets if n != name)
        for judge in (*judges.settings, "two-model"):
            if judge == "two-model":
                t, cut, _ = tune_two_model(others(decisions["plain"], name), e5, args.budget)
                ds = [(s, c, v >= cut) for (s, c, _), v in zip(decisions["plain"][name], e5[name], strict=True)]
                label = f"{t:.3g} / e5 {cut:.2f}"
                matcher = Matcher(judges.use, replace(judges.settings["plain"], threshold=t, verify_below=1.01,
                                                      verify_threshold=cut), judges.e5)
            else:
                t = tune(others(decisions[judge], name), args.budget)
                ds, label, matcher = decisions[judge][name], f"{t:.3g}", judges.matcher(judge, t)
            one = per_scope(ds, t)
            full = "-", "-"
            if not args.skip_full_index:
                outcome = full_index(matcher, stored, pairs)
                full = cell(outcome, "served"), cell(outcome, "per_hit")
            print(f"| {name} | {judge} | {tuned_on} | {label} | {cell(one, 'served')} | {cell(one, 'wrong')} "
                  f"| {full[0]} | {full[1]} |")
            if judge in ("guards", "order-veto", "two-model"):
                comparisons.append(f"| {name} | {judge} | {tuned_on} | {cell(one, 'served')} | {cell(one, 'wrong')} "
                                   f"| {versus_plain(ds, t, decisions['plain'][name])} |")
        for judge, with_e5 in LEARNED.items():
            cut, held = learned_row(sets, decisions, e5, name, args.budget, with_e5)
            one = per_scope(held, cut)
            comparisons.append(f"| {name} | {judge} | {tuned_on} | {cell(one, 'served')} | {cell(one, 'wrong')} "
                               f"| {versus_plain(held, cut, decisions['plain'][name])} |")
            print(f"| {name} | {judge} | {tuned_on} | p >= {cut:.3g} | {cell(one, 'served')} "
                  f"| {cell(one, 'wrong')} | - | - |")
    print("\n## Each stage against plain cosine at equal wrong rate, on the held-out set\n")
    print("| set (held out) | stage | fitted and tuned on | stage: dups served | stage: non-dups wrong "
          "| stage minus plain, dups served (95% bootstrap) |")
    print("|---|---|---|---|---|---|")
    print("\n".join(comparisons))


def equal_wrong(judges: Judges, sets: dict[str, list[LabelledPair]], decisions: dict[str, dict[str, Decisions]],
                e5: dict[str, list[float]], budget: float) -> None:
    print(f"\n## Equal wrong rate: duplicates served at the lowest threshold with wrong <= {budget:.0%} "
          "on the set itself (how far each judge's curve reaches; not a tuned result)\n")
    print("| set | " + " | ".join(judges.settings) + " | two-model (best e5 cut) |")
    print("|---" * (len(judges.settings) + 2) + "|")
    for name in sets:
        row = []
        for judge in judges.settings:
            t = tune({name: decisions[judge][name]}, budget)
            row.append(f"{per_scope(decisions[judge][name], t).rate('served')[0]:.1%} (t {t:.3g})")
        t, cut, served = tune_two_model({name: decisions["plain"][name]}, e5, budget)
        row.append(f"{served:.1%} (t {t:.3g}, e5 {cut:.2f})")
        print(f"| {name} | " + " | ".join(row) + " |")
    print("\n## Served / wrong by threshold, one pair per scope\n")
    shown = ("plain", "guards+verifier")
    print("| threshold | " + " | ".join(f"{n} {j}" for n in sets for j in shown) + " |")
    print("|---" * (1 + len(shown) * len(sets)) + "|")
    for t in (0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999):
        outcomes = [per_scope(decisions[j][n], t) for n in sets for j in shown]
        cells = [f"{o.rate('served')[0]:.0%} / {o.rate('wrong')[0]:.1%}" for o in outcomes]
        print(f"| {t} | " + " | ".join(cells) + " |")
    print("(cells: duplicates served / non-duplicates wrong)")


def seed(judges: Judges) -> None:
    print()
    for a, b in (("什么是人工智能？", "AI 是什么？"), ("给我讲个笑话", "今天天气怎么样？")):
        rows = judges.use.embed([a, b])
        print(f"- {a} / {b}: cosine {float(rows[0] @ rows[1]):.3f}")


def multi_turn(judges: Judges) -> None:
    """fow-cache's multi-turn pairs: a hit needs the same scope (earlier turns), as in the gateway."""
    from fow_cache.data import load_conversations

    convs = load_conversations()
    matcher = judges.matcher("plain", 0.0)

    def hit(p: dict[str, object]) -> bool:
        qa = semantic_query({"model": "m", "messages": p["a"]}, None)
        qb = semantic_query({"model": "m", "messages": p["b"]}, None)
        if qa is None or qb is None or qa.scope != qb.scope:
            return False
        rows = matcher.embed([qa.text, qb.text])
        return matcher.judge(qa.text, qb.text, float(rows[0] @ rows[1])) is None

    traps = [p for p in convs if not p["same_answer"]]
    wrong: Callable[[], int] = lambda: sum(hit(p) for p in traps)  # noqa: E731
    print(f"- multi-turn context swaps ({len(traps)} traps), scoped, plain judge at any threshold: "
          f"{wrong()} answered wrongly")


def write_curves(decisions: dict[str, dict[str, Decisions]], e5: dict[str, list[float]],
                 sets: tuple[str, ...]) -> None:
    """The default (plain) judge's curve per embedded model over all sets, pooled and per set
    (a budget holds in every set with enough non-duplicates), for the budget setting."""
    CURVES.mkdir(parents=True, exist_ok=True)
    use = decisions["plain"]
    e5_plain = {n: [(same, min(1.0, max(0.0, v)), True) for (same, _, _), v in zip(use[n], e5[n], strict=True)]
                for n in sets}
    for model, parts in ((MODEL, use), (VERIFIER, e5_plain)):
        curve: Curve = curve_from_sets(model, parts, THRESHOLDS)
        (CURVES / f"{model}.json").write_text(curve.to_json())
        print(f"\nwrote {CURVES / (model + '.json')} (plain judge, sets {', '.join(sets)}); threshold at "
              f"1% / 2% / 5% wrong in every set: {curve.threshold_for(0.01):.3g} / {curve.threshold_for(0.02):.3g} / "
              f"{curve.threshold_for(0.05):.3g}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
