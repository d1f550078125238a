"""Near-verbatim repeats are served whatever their cosine; punctuation inside a prompt still counts."""

from __future__ import annotations

import pytest

from reprise.semantic.matcher import Matcher
from reprise.semantic.near_verbatim import NEAR_VERBATIM_FLOOR, near_verbatim
from reprise.semantic.settings import SemanticSettings


@pytest.mark.parametrize(("a", "b"), [
    ("What is HTTP/2?", "what is http/2"),
    ("How do I   reset my password", "how do i reset my password?!"),
    ("什么是人工智能？", "什么是人工智能"),
    ("Ölpreis HEUTE.", "ölpreis heute"),
])
def test_case_spacing_and_closing_punctuation_do_not_matter(a: str, b: str) -> None:
    assert near_verbatim(a, b) and Matcher.effective_score(a, b, 0.7) == 1.0


@pytest.mark.parametrize(("a", "b"), [
    ("What is 2+2?", "What is 2-2?"),
    ("Is C++ fast?", "Is C fast?"),
    ("It is -5 degrees", "It is 5 degrees"),
    ("Let's eat, grandma", "Let's eat grandma"),
    ("order 48213", "order 48231"),
    ("Welche Maße hat die Kiste?", "Welche Masse hat die Kiste?"),  # dimensions vs mass: not case
    ("Who is the therapist?", "Who is the rapist?"),
    ("", ""), ("  ", " ? "),
])
def test_anything_else_is_left_to_the_embedding(a: str, b: str) -> None:
    assert not near_verbatim(a, b)
    assert Matcher.effective_score(a, b, 0.91) == 0.91


def test_the_index_is_searched_down_to_the_floor_whatever_the_threshold() -> None:
    assert SemanticSettings(threshold=0.999).search_floor == NEAR_VERBATIM_FLOOR
    assert SemanticSettings(threshold=0.6).search_floor == 0.6
    assert SemanticSettings(threshold=0.999, judge_from=0.7).search_floor == 0.7
