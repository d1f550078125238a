"""Language-agnostic features of a prompt pair, for a learned second stage (issue 13, item 3).

Pure: two strings in, a tuple of floats out; no word lists, no I/O. The features are
meant to transfer across languages and datasets, unlike the guards' vocabularies:

* overlap of the unordered tokens against overlap of *ordered* bigrams and the longest
  common subsequence: "same words, different order or roles" (A of B vs B of A, PAWS-X's
  swaps) keeps the first high and drops the others;
* the share of discordant pairs among the shared tokens (Kendall's distance of their
  positions): a swap of two spans inverts many of them, an added word none;
* length ratio and whether the digit strings differ (Arabic digits, in any script).

Tokens are single CJK characters (Chinese has no spaces, and a character is the unit
its paraphrases share) and lower-cased runs of other letters or digits.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+", re.UNICODE)
_DIGITS = re.compile(r"\d+")

#: Names of :func:`pair_features`' values, in order (the shipped coefficients follow it).
FEATURE_NAMES = ("cosine", "unigram_dice", "bigram_dice", "order_gap", "lcs_ratio", "discordance",
                 "length_ratio", "digits_differ")
#: Longest token sequence compared in full; the LCS beyond it costs more than it tells.
MAX_TOKENS = 200


def tokens(text: str) -> list[str]:
    """CJK characters one by one, other words lower-cased (punctuation and spaces dropped)."""
    return _TOKEN.findall(text.lower())[:MAX_TOKENS]


def dice(a: Counter[str] | Counter[tuple[str, str]], b: Counter[str] | Counter[tuple[str, str]]) -> float:
    """Multiset Dice overlap (1.0 for two empty multisets: nothing differs)."""
    total = sum(a.values()) + sum(b.values())
    return 1.0 if total == 0 else 2 * sum((a & b).values()) / total  # type: ignore[operator]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)), one row kept)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, 1):
            keep = row[j]
            row[j] = previous + 1 if x == y else max(row[j], row[j - 1])
            previous = keep
    return row[-1]


def discordance(a: Sequence[str], b: Sequence[str]) -> float:
    """Share of pairs of shared tokens whose order differs between ``a`` and ``b`` (0 when < 2 shared)."""
    first_b: dict[str, int] = {}
    for i, t in enumerate(b):
        first_b.setdefault(t, i)
    seen: set[str] = set()
    positions = []
    for t in a:
        if t in first_b and t not in seen:
            seen.add(t)
            positions.append(first_b[t])
    n = len(positions)
    if n < 2:
        return 0.0
    inverted = sum(1 for i in range(n) for j in range(i + 1, n) if positions[i] > positions[j])
    return inverted / (n * (n - 1) / 2)


def pair_features(a: str, b: str, cosine: float) -> tuple[float, ...]:
    """The features named in :data:`FEATURE_NAMES` for prompts ``a`` and ``b`` at retrieval ``cosine``."""
    ta, tb = tokens(a), tokens(b)
    uni = dice(Counter(ta), Counter(tb))
    bi = dice(Counter(zip(ta, ta[1:], strict=False)), Counter(zip(tb, tb[1:], strict=False)))
    longest = max(len(ta), len(tb))
    lcs = 1.0 if longest == 0 else lcs_length(ta, tb) / longest
    ratio = 1.0 if longest == 0 else min(len(ta), len(tb)) / longest
    digits = float(Counter(_DIGITS.findall(a)) != Counter(_DIGITS.findall(b)))
    return (cosine, uni, bi, uni - bi, lcs, discordance(ta, tb), ratio, digits)
