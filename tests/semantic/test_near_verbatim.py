"""Near-verbatim repeats are served whatever their cosine; nothing wider (each wider form was
found serving wrong answers from outside); whitespace-only differences are never served."""

from __future__ import annotations

import pytest

from reprise.semantic.matcher import Matcher
from reprise.semantic.near_verbatim import (
    NEAR_COPY_FROM,
    differs_only_in_whitespace,
    near_copy,
    near_verbatim,
)
from reprise.semantic.settings import SemanticSettings


@pytest.mark.parametrize(("a", "b"), [
    ("How do I renew a passport?", "How do I renew a passport"),
    ("  Where do I send my meter reading?   ", "Where do I send my meter reading?"),
    ("How long does a passport renewal take", "How long does a passport renewal take..."),
    ("How do I invite a guest to a shared project?", "How do I invite a guest to a shared project ?"),
    ("什么是人工智能？", "什么是人工智能"),
    ("What is 2.5?", "What is 2.5"),
])
def test_outer_whitespace_and_a_closing_question_mark_or_stop_make_a_near_verbatim_repeat(a: str, b: str) -> None:
    """Exempt from the near-copy veto; served only on a score that clears the threshold (below)."""
    assert near_verbatim(a, b) and not near_copy(a, b)
    matcher = Matcher(None, SemanticSettings(threshold=0.98))
    assert matcher.judge(a, b, 0.99) is None


@pytest.mark.parametrize(("a", "b"), [
    ("Does this regex match the empty string: a?", "Does this regex match the empty string: a"),
    ("In Python, what is the type of 3.", "In Python, what is the type of 3"),
    ("Explain this Kotlin type: String?", "Explain this Kotlin type: String"),
])
def test_a_near_verbatim_repeat_is_judged_on_its_score(a: str, b: str) -> None:
    """Found from outside: judged as 1.0 whatever its cosine, the closing mark that is the question
    (a regex's ``?``, ``3.``, a nullable type) was served at 0.92-0.97."""
    assert near_verbatim(a, b)
    assert Matcher(None, SemanticSettings(threshold=0.98)).judge(a, b, 0.95) == "threshold"


@pytest.mark.parametrize(("a", "b"), [
    ("What is 5!", "What is 5?"),  # a factorial
    ("Calculate 7!", "Calculate 7"),
    (".5 multiplied by 8 equals what", "5 multiplied by 8 equals what"),
    ("Is 'Hello' == 'hello' in Python?", "Is 'hello' == 'hello' in Python?"),  # case is content
    ("ASCII code of A", "ASCII code of a"),
    ("Tell me about Turkey", "Tell me about turkey"),
    ("What is 2+2?", "What is 2-2?"),
    ("Who is the therapist?", "Who is the rapist?"),
    ("", ""), ("  ", " ? "),
])
def test_anything_else_is_not_a_near_verbatim_repeat(a: str, b: str) -> None:
    assert not near_verbatim(a, b)
    assert Matcher(None, SemanticSettings(threshold=0.95)).judge(a, b, 0.91) == "threshold"  # judged on its score


def test_whitespace_inside_a_prompt_is_never_ignored() -> None:
    """Found from outside: USE scores a snippet and the same snippet with a line dedented 1.0000."""
    code = "What does this print?\nfor i in range(3):\n    x = i\n    print(x)"
    dedented = "What does this print?\nfor i in range(3):\n    x = i\nprint(x)"
    assert differs_only_in_whitespace(code, dedented)
    assert differs_only_in_whitespace("Count the spaces in: a  b   c", "Count the spaces in: a b c")
    assert not differs_only_in_whitespace("How do I renew a passport? ", "How do I renew a passport")
    assert not differs_only_in_whitespace(code, code)
    matcher = Matcher(None, SemanticSettings(threshold=0.9))
    assert matcher.judge(code, dedented, 1.0) == "whitespace"


def test_the_index_is_searched_down_to_the_threshold_or_the_band() -> None:
    assert SemanticSettings(threshold=0.999).search_floor == 0.999
    assert SemanticSettings(threshold=0.6).search_floor == 0.6
    assert SemanticSettings(threshold=0.999, judge_from=0.7).search_floor == 0.7


REPORT = " ".join(["the report shows revenue growth in the third quarter driven by cloud sales"] * 12)


@pytest.mark.parametrize(("a", "b"), [
    (REPORT + "\n\nSummarize this text in one sentence.", REPORT + "\n\nTranslate this text into French."),
    ("Is the following statement true?\n\n" + REPORT, "Is the following statement false?\n\n" + REPORT),
    ("What does this word mean: serendipity", "What does this word mean: ephemeral"),
    ("Translate to English: வணக்கம்", "Translate to English: தண்ணீர்"),
])
def test_a_near_copy_is_never_served_on_a_high_score(a: str, b: str) -> None:
    """Found from outside: the shared text outweighs the edit (USE: 0.9997-1.0000 for these)."""
    assert near_copy(a, b)
    matcher = Matcher(None, SemanticSettings(threshold=0.9))
    assert matcher.judge(a, b, 0.9999) == "near-copy"
    assert matcher.judge(a, b, 0.95) is None  # below NEAR_COPY_FROM the score still ranks


def test_rewordings_and_repeats_are_not_near_copies() -> None:
    assert not near_copy("How do I bake sourdough bread", "What is the way to make sourdough")
    assert not near_copy("How do I renew a passport?", "How do I renew a passport")  # near-verbatim
    assert not near_copy("", "")
    assert NEAR_COPY_FROM < 1.0


LONG_REPORT = ("Quarterly results: revenue grew in the cloud segment while hardware sales declined; operating "
               "costs rose because of hiring in two regions, and the board approved a new buyback. ") * 8


@pytest.mark.parametrize(("a", "b"), [
    ("Please help. " + LONG_REPORT + "Is revenue up?", "Please help: " + LONG_REPORT + "Is revenue down?"),
    ("Please help. " + LONG_REPORT + "Summarize it.", "Please help: " + LONG_REPORT + "Translate it."),
], ids=["up-down", "summarize-translate"])
def test_a_near_copy_is_found_wherever_its_edits_are(a: str, b: str) -> None:
    """Found from outside: one character changed near the start cut the common beginning, so a
    report asking "Is revenue up?" was served for the same report asking "down?" (USE 0.9998)."""
    assert near_copy(a, b)
    assert Matcher(None, SemanticSettings(threshold=0.999)).judge(a, b, 0.9998) == "near-copy"


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


@pytest.mark.parametrize(("a", "b"), [
    (LONG_REPORT + "Is revenue up?", _full_width(LONG_REPORT) + "Is revenue down?"),
    ("Tôi sẽ đi Hà Nội vào tháng mười hai. Có nên mang áo khoác không?",
     __import__("unicodedata").normalize("NFD", "Tôi sẽ đi Hà Nội vào tháng mười hai. Có nên mang ô không?")),
], ids=["full-width", "nfd"])
def test_a_near_copy_is_judged_as_the_model_reads_it(a: str, b: str) -> None:
    """Found from outside: the same report in full-width forms (or Vietnamese in NFD) shared no raw
    character with the original, yet USE folds both (0.9994): the edit was served."""
    assert near_copy(a, b)


def test_a_harmless_fold_alone_is_not_a_whitespace_difference() -> None:
    assert not differs_only_in_whitespace("３个苹果多少钱", "3个苹果多少钱")
    assert differs_only_in_whitespace("Ｃount the spaces: a  b", "Count the spaces: a b")


@pytest.mark.parametrize(("a", "b"), [
    ("Is this sentence a question or a statement: You are coming with us?",
     "Is this sentence a question or a statement: You are coming with us."),
    ("Translate into Spanish: You speak English?", "Translate into Spanish: You speak English."),
])
def test_a_closing_mark_swapped_for_another_is_not_a_repeat(a: str, b: str) -> None:
    """Found from outside: the mark was the question, and the pair was served as a repeat."""
    assert not near_verbatim(a, b)
    assert near_verbatim(a, a.rstrip("?.")) and near_verbatim(b, b.rstrip("?."))
