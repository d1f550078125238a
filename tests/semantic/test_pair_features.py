"""Order-sensitive pair features: pure, so checked on hand-made pairs in English and Chinese."""

from __future__ import annotations

import pytest

from reprise.semantic.pair_features import (
    FEATURE_NAMES,
    MAX_TOKENS,
    discordance,
    lcs_length,
    pair_features,
    tokens,
)


def named(a: str, b: str, cosine: float = 0.9) -> dict[str, float]:
    values = pair_features(a, b, cosine)
    assert len(values) == len(FEATURE_NAMES)
    return dict(zip(FEATURE_NAMES, values, strict=True))


def test_tokens_split_cjk_by_character_and_other_scripts_by_word() -> None:
    assert tokens("什么是AI？") == ["什", "么", "是", "ai"]
    assert tokens("Don't cancel, please!") == ["don", "t", "cancel", "please"]
    assert len(tokens("word " * (MAX_TOKENS + 50))) == MAX_TOKENS


def test_lcs_and_discordance_on_small_sequences() -> None:
    assert lcs_length("abcde", "ace") == 3
    assert lcs_length("", "abc") == 0
    assert discordance(list("abcd"), list("abcd")) == 0.0
    assert discordance(list("abcd"), list("dcba")) == 1.0
    assert discordance(list("ab"), list("ba")) == 1.0
    assert discordance(list("a"), list("a")) == 0.0  # fewer than two shared tokens


def test_a_role_swap_keeps_the_words_but_loses_order_features() -> None:
    same = named("flights from Paris to London", "flights from Paris to London")
    swap = named("flights from Paris to London", "flights from London to Paris")
    assert same["unigram_dice"] == swap["unigram_dice"] == 1.0
    assert swap["bigram_dice"] < same["bigram_dice"] == 1.0
    assert swap["order_gap"] > 0 == same["order_gap"]
    assert swap["discordance"] > 0 == same["discordance"]
    assert swap["lcs_ratio"] < 1.0


def test_chinese_swap_is_seen_the_same_way() -> None:
    swap = named("北京到上海的火车", "上海到北京的火车")
    assert swap["unigram_dice"] == 1.0
    assert swap["bigram_dice"] < 1.0 and swap["discordance"] > 0


def test_an_added_word_changes_length_not_order() -> None:
    added = named("how do I reset my password", "how do I reset my email password")
    assert added["discordance"] == 0.0
    assert added["length_ratio"] == pytest.approx(6 / 7)
    assert added["lcs_ratio"] == pytest.approx(6 / 7)


def test_digits_and_cosine_pass_through() -> None:
    assert named("Track order 48213", "Track order 48231")["digits_differ"] == 1.0
    assert named("Track order 48213", "track ORDER 48213")["digits_differ"] == 0.0
    assert named("a", "b", cosine=0.42)["cosine"] == 0.42
    assert named("", "")["lcs_ratio"] == 1.0
