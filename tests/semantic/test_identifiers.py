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


def test_long_tokens_without_digits_must_match_too() -> None:
    """Found from outside: 40 letter-only keys (``sk_live_`` + 24 letters) scored 0.983 against 40
    others, and a 1,935-residue protein sequence 0.980-0.983 against another: both were served."""
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def keys() -> str:
        return " ".join("sk_live_" + "".join(rng.choice(letters) for _ in range(24)) for _ in range(40))

    assert identifiers_differ("Which of these API keys were revoked? " + keys(),
                              "Which of these API keys were revoked? " + keys())
    residues = "ACDEFGHIKLMNPQRSTVWY"
    protein = "Which protein is this? Sequence: M" + "".join(rng.choice(residues) for _ in range(1935))
    other = "Which protein is this? Sequence: M" + "".join(rng.choice(residues) for _ in range(1935))
    assert Matcher(None, SemanticSettings(threshold=0.98)).judge(protein, other, 0.983) == "identifiers"
    assert not identifiers_differ("What does internationalization mean?", "Explain internationalization")


def test_a_chinese_clause_is_not_an_identifier() -> None:
    """CJK text has no spaces: a long clause is one \\w run, and a paraphrase of it must stay servable."""
    assert not identifiers_differ("她们中有波莱罗舞曲作曲家玛丽特蕾莎里奥斯作家尤莉塔罗斯以及歌手西尔维娅雷克萨奇",
                                  "她们中有波列罗舞作曲家玛丽特里萨里奥斯作家茱利塔罗斯和歌手希薇亚雷萨赫")
