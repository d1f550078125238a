"""Numbers and identifiers must match: exact content the embedding blurs (found from outside)."""

from __future__ import annotations

import random

from reprise.semantic.identifiers import identifiers, identifiers_differ
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import SemanticSettings


def commit_ids(seed: int, n: int = 20) -> str:
    rng = random.Random(seed)
    return "\n".join(f"{rng.getrandbits(160):040x}" for _ in range(n))


def test_different_ids_under_the_same_question_are_not_served() -> None:
    """USE scored two lists of 20 random commit ids 0.986 and the second list was served the first's answer."""
    a = "Which of these commit ids is newest?\n" + commit_ids(1)
    b = "Which of these commit ids is newest?\n" + commit_ids(2)
    assert identifiers_differ(a, b)
    assert Matcher(None, SemanticSettings(threshold=0.98)).judge(a, b, 0.986) == "identifiers"
    assert Matcher(None, SemanticSettings(threshold=0.98)).judge("Track order 48213", "Track order 48231",
                                                                0.99) == "identifiers"


def test_the_same_numbers_in_another_order_form_or_script_match() -> None:
    assert not identifiers_differ("Is the shop open from 9 to 17?", "From 9 to 17, is the shop open")
    assert not identifiers_differ("３个苹果多少钱", "3个苹果多少钱")  # full-width digits, NFKC
    assert not identifiers_differ("كم سعر ٣ تفاحات", "كم سعر 3 تفاحات")  # Arabic-Indic digits
    assert identifiers("Meet at 2pm, room B12") == ["2pm", "B12"]
    assert not identifiers_differ("How do I reset my password?", "I forgot my password")
