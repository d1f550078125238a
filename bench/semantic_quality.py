"""Semantic cache quality: how many should-hit pairs are served, how many traps answered wrongly.

    python bench/semantic_quality.py [--models use-multilingual-v3,multilingual-e5-small]

Data: ``fow-cache`` (PyPI, CC-BY-4.0 data): 600 labelled question pairs and 240 multi-turn
conversation pairs, plus our Chinese pairs in ``bench/data/semantic_zh_pairs.jsonl``.
Pairs are split in two halves by a hash of their id: thresholds are chosen on the
*tune* half and every headline figure is reported on the *held-out* half. Ambiguous
pairs count as traps (fow-cache's strict default). A pair is a hit when
cosine >= threshold and no guard vetoes it (reprise.core.guards), exactly as the
gateway decides; conversations must also share a scope (reprise.core.scope).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reprise.core.guards import GuardConfig
from reprise.core.scope import semantic_query
from reprise.embeddings.base import EMBEDDERS, load_embedder
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import DEFAULT_THRESHOLDS, DEFAULT_VERIFIERS, default_settings

ZH = Path(__file__).parent / "data" / "semantic_zh_pairs.jsonl"
SWEEP = (0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95)


def load_pairs() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from fow_cache.data import load_conversations, load_questions

    questions = load_questions() + [json.loads(line) for line in ZH.read_text().splitlines() if line.strip()]
    return questions, load_conversations()


def is_trap(pair: dict[str, Any]) -> bool:
    return not pair["same_answer"] or bool(pair.get("ambiguous"))


def held_out(pair: dict[str, Any]) -> bool:
    return hashlib.sha256(pair["id"].encode()).digest()[0] % 2 == 1


class Scorer:
    """Retrieval cosines (memoised per text) and the gateway's own judge for one model."""

    def __init__(self, name: str, verifier: str | None, threshold: float) -> None:
        self.embedder = load_embedder(name)
        self.verifier = load_embedder(verifier) if verifier else None
        self.vectors: dict[str, np.ndarray] = {}
        self.latencies: list[float] = []
        self.matchers: dict[tuple[float, str], Matcher] = {}

    def vector(self, text: str) -> np.ndarray:
        if text not in self.vectors:
            start = time.perf_counter()
            self.vectors[text] = self.embedder.embed([text])[0]
            self.latencies.append(time.perf_counter() - start)
        return self.vectors[text]

    def cosine(self, a: str, b: str) -> float:
        return float(np.clip(self.vector(a) @ self.vector(b), 0.0, 1.0))

    def matcher(self, threshold: float, mode: str) -> Matcher:
        """``plain`` cosine only, ``guards`` without verifier, ``shipped`` guards + verifier band."""
        if (threshold, mode) not in self.matchers:
            settings = default_settings(self.embedder.name, threshold)
            if mode == "plain":
                settings = replace(settings, guards=NO_GUARDS, verify_below=0.0)
            elif mode == "guards":
                settings = replace(settings, verify_below=0.0)
            self.matchers[threshold, mode] = Matcher(self.embedder, settings, self.verifier)
        return self.matchers[threshold, mode]

    def hit(self, a: str, b: str, threshold: float, mode: str) -> bool:
        return self.matcher(threshold, mode).judge(a, b, self.cosine(a, b)) is None


NO_GUARDS = GuardConfig(numbers=False, polarity=False, slots=False, entities=False, direction=False, edit=False)


def rates(pairs: list[dict[str, Any]], hit: Callable[[dict[str, Any]], bool]) -> tuple[float, float, int, int]:
    good = [p for p in pairs if not is_trap(p)]
    traps = [p for p in pairs if is_trap(p)]
    served = sum(hit(p) for p in good) / max(1, len(good))
    wrong = sum(hit(p) for p in traps) / max(1, len(traps))
    return served, wrong, len(good), len(traps)


def question_hit(scorer: Scorer, threshold: float, mode: str) -> Callable[[dict[str, Any]], bool]:
    return lambda p: scorer.hit(p["a"], p["b"], threshold, mode)


def conversation_hit(scorer: Scorer, threshold: float, scoped: bool) -> Callable[[dict[str, Any]], bool]:
    def hit(p: dict[str, Any]) -> bool:
        qa = semantic_query({"model": "m", "messages": p["a"]}, None)
        qb = semantic_query({"model": "m", "messages": p["b"]}, None)
        if qa is None or qb is None:
            return False
        if not scoped:  # the peers' way: the last message alone, plain cosine
            return scorer.hit(qa.text, qb.text, threshold, "plain")
        return qa.scope == qb.scope and scorer.hit(qa.text, qb.text, threshold, "shipped")
    return hit


def report(name: str, questions: list[dict[str, Any]], conversations: list[dict[str, Any]]) -> None:
    default = DEFAULT_THRESHOLDS[name]
    verifier = DEFAULT_VERIFIERS.get(name)
    scorer = Scorer(name, verifier, default)
    test = [p for p in questions if held_out(p)]
    print(f"\n## {name}  (shipped: threshold {default}, verifier {verifier})\n")
    print("Held-out half; 'plain' = cosine only, 'guards' = + false-hit guards, "
          "'shipped' = + verifier below 0.85.\n")
    print("| threshold | plain served | plain wrong | guards served | guards wrong | shipped served | shipped wrong |")
    print("|---|---|---|---|---|---|---|")
    for threshold in sorted({*SWEEP, default}):
        cells = []
        for mode in ("plain", "guards", "shipped"):
            s, w, _, _ = rates(test, question_hit(scorer, threshold, mode))
            cells += [f"{s:.1%}", f"{w:.1%}"]
        mark = " (default)" if threshold == default else ""
        print(f"| {threshold:.2f}{mark} | " + " | ".join(cells) + " |")
    s, w, ng, nt = rates(test, question_hit(scorer, default, "shipped"))
    print(f"\nshipped defaults, held-out: should-hit served {s:.1%} of {ng}, traps answered wrongly {w:.1%} of {nt}")
    s, w, ng, nt = rates(questions, question_hit(scorer, default, "shipped"))
    print(f"shipped defaults, all pairs: served {s:.1%} of {ng}, wrong {w:.1%} of {nt}")
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for p in test:
        by_cat.setdefault(p["category"], []).append(p)
    hit = question_hit(scorer, default, "shipped")
    print("hit rate per category (held-out): " + ", ".join(
        f"{c} {sum(hit(p) for p in ps) / len(ps):.0%}" for c, ps in sorted(by_cat.items())))
    for a, b in (("什么是人工智能？", "AI 是什么？"), ("给我讲个笑话", "今天天气怎么样？")):
        print(f"{a} / {b}: cosine {scorer.cosine(a, b):.3f}, served: {hit({'a': a, 'b': b})}")
    for scoped, label in ((False, "last message only, plain cosine"), (True, "scoped + shipped judge")):
        s, w, ng, nt = rates(conversations, conversation_hit(scorer, default, scoped))
        print(f"multi-turn ({label}): should-hit served {s:.1%} of {ng}, traps wrong {w:.1%} of {nt}")
    lat = np.array(scorer.latencies) * 1000
    print(f"embedding latency per prompt: p50 {np.percentile(lat, 50):.2f} ms, p95 {np.percentile(lat, 95):.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(EMBEDDERS))
    args = parser.parse_args(argv)
    try:
        questions, conversations = load_pairs()
    except ImportError:
        print("needs the labelled data: pip install fow-cache", file=sys.stderr)
        return 2
    print(f"# semantic quality: {len(questions)} question pairs, {len(conversations)} conversation pairs")
    for name in args.models.split(","):
        report(name, questions, conversations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
