"""Measure a matcher on labelled prompt pairs: served, wrong, wrong per 100 hits.

Shared by ``bench/semantic_quality.py`` and ``reprise semantic eval``, so both report the
gateway's own decision: every pair goes through :meth:`Matcher.judge`, the code a lookup
runs. Embeddings are memoised per text (:class:`MemoEmbedder`), so a sweep over
thresholds or a second setting costs no model call.

Two settings:

* **one pair per scope**: ``a`` is the only stored prompt, ``b`` is asked. Served means
  the judge accepts ``a`` for ``b``; on a duplicate pair that is a correct hit, on a
  non-duplicate pair a wrong answer.
* **full index**: every ``a`` of every set is stored in one scope, then every ``b`` is
  asked and the gateway's top-k search runs (the ``k`` nearest above the threshold,
  best first, the first the judge accepts is served). A hit is correct only if the
  served prompt is one labelled a duplicate of ``b``; serving a *different* stored
  question is wrong even when ``b`` has a duplicate in the index.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from reprise.embeddings.base import Embedder, Vectors
from reprise.semantic.calibration import wilson
from reprise.semantic.invisible import KnowsItsVocabulary, generic_unseen
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import VERIFY_BELOW


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two prompts and whether one answer serves both (``same``)."""

    a: str
    b: str
    same: bool


class PairsFileError(ValueError):
    """A labelled-pairs file that cannot be used; the message names the file (and line)."""


PAIR_SHAPE = '{"a": "<text>", "b": "<text>", "same": true|false}'


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """``{"a": ..., "b": ..., "same": true|false}`` per line (blank lines skipped).

    Strict, since a wrong label moves the threshold silently: ``same`` must be a JSON
    boolean (``"false"`` is a string, not false), ``a`` and ``b`` non-empty strings
    (``null`` is not the text "None"). :class:`PairsFileError` names the file and line."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsFileError(f"{path}: cannot read the pairs file ({exc})") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            pairs.append(_pair(line, f"{path}:{number}"))
    return pairs


def _pair(line: str, where: str) -> LabelledPair:
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise PairsFileError(f"{where}: not JSON ({exc}); expected {PAIR_SHAPE}") from None
    if not isinstance(item, dict):
        raise PairsFileError(f"{where}: expected an object {PAIR_SHAPE}, got {type(item).__name__}")
    for name in ("a", "b"):
        value = item.get(name)
        if not isinstance(value, str) or not value.strip():
            raise PairsFileError(f"{where}: {name!r} must be a non-empty string, got {_shown(item, name)}")
    same = item.get("same")
    if not isinstance(same, bool):
        raise PairsFileError(f"{where}: 'same' must be true or false (a JSON boolean), got {_shown(item, 'same')}")
    return LabelledPair(item["a"], item["b"], same)


def _shown(item: dict[str, object], name: str) -> str:
    return json.dumps(item[name], ensure_ascii=False)[:40] if name in item else "nothing"


def require_both_kinds(pairs: Sequence[LabelledPair], path: str | Path) -> None:
    """PairsFileError unless ``pairs`` hold a duplicate and a non-duplicate: a threshold for a
    wrong-answer rate is measured on non-duplicates, what it serves on duplicates."""
    duplicates = sum(pair.same for pair in pairs)
    others = len(pairs) - duplicates
    if not duplicates or not others:
        raise PairsFileError(f"{path}: needs at least one pair with \"same\": true and one with \"same\": false "
                             f"to set a threshold; found {duplicates} with true and {others} with false")


class MemoEmbedder:
    """An :class:`Embedder` that embeds each distinct text once (for evaluation, not serving)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._rows: dict[str, np.ndarray] = {}

    def save(self, path: Path) -> None:
        """Keep the embeddings for a later run (``bench/semantic_quality.py --embeddings``)."""
        texts = list(self._rows)
        np.savez(path, texts=np.array(texts, dtype=object),
                 rows=np.stack([self._rows[t] for t in texts]) if texts else np.zeros((0, self.dim)))

    def load(self, path: Path) -> None:
        if path.exists():
            data = np.load(path, allow_pickle=True)
            self._rows.update(zip((str(t) for t in data["texts"]), data["rows"], strict=True))

    def embed(self, texts: Sequence[str]) -> Vectors:
        missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            for text, row in zip(chunk, self.inner.embed(chunk), strict=True):
                self._rows[text] = row
        return np.stack([self._rows[t] for t in texts]).astype(np.float32)

    def unseen(self, text: str) -> str:
        """The inner model's unseen characters (:mod:`reprise.semantic.invisible`), so an evaluation
        judges with the vocabulary the gateway judges with (it used the stand-in for a while)."""
        if isinstance(self.inner, KnowsItsVocabulary):
            return self.inner.unseen(text)
        return generic_unseen(text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Counts of one setting on one set; rates and Wilson intervals derive from them."""

    duplicates: int
    served: int
    non_duplicates: int
    wrong: int
    hits: int
    wrong_hits: int

    def rate(self, name: str) -> tuple[float, float, float]:
        """(rate, low, high) for ``served`` (of duplicates), ``wrong`` (of non-duplicates)
        or ``per_hit`` (wrong hits among all hits)."""
        k, n = {"served": (self.served, self.duplicates), "wrong": (self.wrong, self.non_duplicates),
                "per_hit": (self.wrong_hits, self.hits)}[name]
        low, high = wilson(k, n)
        return (k / n if n else 0.0), low, high


def pair_decisions(matcher: Matcher, pairs: Iterable[LabelledPair]) -> list[tuple[bool, float, bool]]:
    """(same, retrieval cosine, passes the judge at any threshold up to the cosine) per pair.

    The judge depends on the threshold only through the threshold itself and the top of
    the verifier band (``max(threshold, VERIFY_BELOW)`` in shipped settings), and a pair
    at or above the threshold needs the verifier only below ``VERIFY_BELOW``, so judging
    once with the threshold at 0 and the band topped there gives every threshold's
    answer: served(t) = cosine >= t and passes.
    """
    pairs = list(pairs)
    # Without a verifier there is no band: verify_below is then the configured threshold, and topping
    # the open judge's band there vetoed every pair below it, so thresholds under the configured one
    # were reported as serving nothing more (found: "threshold for 2% wrong: 0.3" on kor-qpair,
    # configured 0.75, with the same served share at both).
    band_top = min(matcher.settings.verify_below, VERIFY_BELOW) if matcher.verifier is not None else 0.0
    open_judge = Matcher(matcher.embedder, replace(matcher.settings, threshold=0.0, verify_below=band_top),
                         matcher.verifier)
    rows = matcher.embed([p.a for p in pairs] + [p.b for p in pairs])
    n = len(pairs)
    out = []
    for i, pair in enumerate(pairs):
        cosine = float(np.clip(rows[i] @ rows[n + i], 0.0, 1.0))
        out.append((pair.same, cosine, open_judge.judge(pair.a, pair.b, cosine) is None))
    return out


def per_scope(decisions: list[tuple[bool, float, bool]], threshold: float) -> Outcome:
    """The one-pair-per-scope outcome at ``threshold`` from :func:`pair_decisions`."""
    served = sum(ok and c >= threshold for same, c, ok in decisions if same)
    wrong = sum(ok and c >= threshold for same, c, ok in decisions if not same)
    duplicates = sum(1 for same, _, _ in decisions if same)
    return Outcome(duplicates, served, len(decisions) - duplicates, wrong, served + wrong, wrong)


def full_index(matcher: Matcher, stored: Sequence[str], queries: Sequence[LabelledPair]) -> Outcome:
    """``stored`` prompts in one scope, each query's ``b`` asked: the gateway's top-k search.

    ``queries`` are labelled pairs whose ``a`` is in ``stored``; a duplicate query is served
    correctly only by a stored prompt labelled its duplicate (any of its pairs). A query
    whose text is stored verbatim is skipped (the exact cache answers it).
    """
    settings = matcher.settings
    texts = list(dict.fromkeys(stored))
    matrix = matcher.embed(texts)
    good: dict[str, set[str]] = {}
    for q in queries:
        if q.same:
            good.setdefault(q.b, set()).add(q.a)
    # A query whose text is itself stored is an exact hit in the gateway, not a semantic one.
    known = set(texts)
    asked = [b for b in dict.fromkeys(q.b for q in queries) if b not in known]
    vectors = matcher.embed(asked)
    duplicates = served = non = wrong = hits = wrong_hits = 0
    for b, vector in zip(asked, vectors, strict=True):
        scores = matrix @ vector
        order = np.argsort(-scores)[: settings.k]
        effective = [(i, float(min(1.0, scores[i]))) for i in order]
        choice = next((texts[i] for i, score in effective if score >= settings.threshold
                       and matcher.judge(texts[i], b, score) is None), None)
        correct = choice is not None and choice in good.get(b, ())
        if b in good:
            duplicates += 1
            served += correct
        else:
            non += 1
            wrong += choice is not None
        hits += choice is not None
        wrong_hits += choice is not None and not correct
    return Outcome(duplicates, served, non, wrong, hits, wrong_hits)
