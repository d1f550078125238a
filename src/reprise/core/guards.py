"""False-hit guards: reasons two similar prompts must *not* share an answer.

A high cosine says two prompts talk about the same thing; it cannot tell "order 48213"
from "order 48231", "safe" from "unsafe" or "savings to current" from "current to
savings" (those pairs score 0.98-1.00). Each guard here compares one structural
feature of the two final user messages and vetoes the hit when it differs:

* ``numbers``   the multisets of numbers, times and amounts (``£50``, ``7pm``, ``3``, ``three``)
* ``polarity``  negations and polar words (not/never/un-/non-, open/closed, add/remove, 不/没)
* ``slots``     words from closed classes that change an answer: weekdays, months, am/pm,
                under/over, before/after, adults/children, full-time/part-time, ...
* ``entities``  names and codes (capitalised words past the first, ``AB12``, ``PDF``)
                present in one prompt and absent from the other
* ``direction`` a term that sits before "to/into/from/vs/than" in one prompt and after it in the other
* ``edit``      the second stage: a small word substitution in otherwise identical prompts
                ("cover Croydon" / "cover Guildford"), allowed only when the swapped phrases
                are themselves near-synonyms by the embedding model (``phrase_similarity``)

Pure functions, no I/O; the embedding model enters only as the ``phrase_similarity``
callable. Measured on held-out labelled data in ``bench/semantic_quality.py``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from reprise.core.lexicon import (
    FILLER,
    NEGATIONS,
    NUMBER_WORDS,
    OPPOSITES,
    SLOT_OF,
    STOPWORDS,
    normalise_word,
)

PhraseSimilarity = Callable[[str, str], float]

_TOKEN = re.compile(
    r"[£$€¥]?\d(?:[\d,.:]*\d)?(?:(?:am|pm|st|nd|rd|th|k|m)\b|%)?"  # numbers, amounts, times, ordinals
    r"|[^\W\d_]+(?:['’-][^\W\d_]+)*"  # words, with inner apostrophes and hyphens
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_DIRECTION = frozenset({"to", "into", "from", "vs", "versus", "than", "onto", "towards", "到", "至", "去", "比"})
_CJK_SLOTS = tuple((word, name) for word, name in SLOT_OF.items() if _CJK.search(word))
#: Slot classes where naming a member in one prompt only already narrows the question.
_STRICT_SLOTS = frozenset({"audience", "employment", "domain", "half-day"})
_NEGATING_PREFIXES = ("un", "non-", "non", "dis", "in", "im", "ir", "il", "de", "anti")
_CODE = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9-]{2,}$")


@dataclass(frozen=True, slots=True)
class Prompt:
    """The features of one final user message that the guards compare."""

    text: str
    words: tuple[str, ...]
    """Normalised word tokens in order (CJK split into characters)."""
    raw_words: tuple[str, ...]
    numbers: Counter[str]
    negations: int
    slots: frozenset[tuple[str, str]]
    """(class, word) for every closed-class word, e.g. ("day", "saturday")."""
    entities: frozenset[str]


def tokenise(text: str) -> list[str]:
    """Word and number tokens; each CJK character is its own token."""
    out: list[str] = []
    for match in _TOKEN.finditer(text.replace("’", "'")):
        token = match.group(0)
        if _CJK.search(token):
            out.extend(_split_cjk(token))
        else:
            out.append(token)
    return out


def _split_cjk(token: str) -> list[str]:
    parts: list[str] = []
    latin = ""
    for char in token:
        if _CJK.match(char):
            if latin:
                parts.append(latin)
                latin = ""
            parts.append(char)
        else:
            latin += char
    if latin:
        parts.append(latin)
    return parts


def _number_value(token: str) -> str | None:
    if token[0].isdigit() or token[0] in "£$€¥":
        return token.lower().rstrip(".,:").replace(",", "")
    return NUMBER_WORDS.get(token.lower())


def analyse(text: str) -> Prompt:
    """Extract the compared features once per prompt (cheap: a regex pass and set lookups)."""
    raw = tokenise(text)
    words = tuple(normalise_word(t) for t in raw)
    numbers: Counter[str] = Counter()
    negations = 0
    slots: set[tuple[str, str]] = set()
    entities: set[str] = set()
    for i, (token, word) in enumerate(zip(raw, words, strict=True)):
        value = _number_value(token)
        if value is not None:
            numbers[value] += 1
            continue
        if word in NEGATIONS:
            negations += 1
        slot = SLOT_OF.get(word)
        if slot is not None:
            slots.add((slot, word))
        if _is_entity(token, i, raw):
            entities.add(word)
    for word, name in _CJK_SLOTS:
        if word in text:
            slots.add((name, word))
    return Prompt(text, words, tuple(raw), numbers, negations, frozenset(slots), frozenset(entities))


def _is_entity(token: str, index: int, raw: list[str]) -> bool:
    lower = token.lower()
    if lower in STOPWORDS or lower in FILLER or _CJK.match(token):
        return False
    if _CODE.match(lower):
        return True
    if len(token) > 1 and token.isupper():
        return True
    at_start = index == 0 or raw[index - 1] in {".", "?", "!"}
    return token[:1].isupper() and not at_start and token != "I"


def check_numbers(a: Prompt, b: Prompt) -> bool:
    return a.numbers == b.numbers


def check_polarity(a: Prompt, b: Prompt) -> bool:
    """Same parity of negators; no word facing its antonym (open/closed, safe/unsafe)."""
    if a.negations % 2 != b.negations % 2:
        return False
    wa, wb = set(a.words), set(b.words)
    return not (_opposed(wa - wb, wb) or _opposed(wb - wa, wa))


def _opposed(own: set[str], other: set[str]) -> bool:
    for word in own:
        if OPPOSITES.get(word, frozenset()) & other:
            return True
        for prefix in _NEGATING_PREFIXES:
            if prefix + word in other or (word.startswith(prefix) and word[len(prefix):] in other):
                return True
    return False


def check_slots(a: Prompt, b: Prompt) -> bool:
    """Closed-class words (weekday, am/pm, audience...) must agree where both prompts use the class."""
    if a.slots == b.slots:
        return True
    classes_a = {name for name, _ in a.slots}
    classes_b = {name for name, _ in b.slots}
    for name in classes_a | classes_b:
        mine = {w for c, w in a.slots if c == name}
        theirs = {w for c, w in b.slots if c == name}
        if mine != theirs and (mine and theirs or name in _STRICT_SLOTS):
            return False
    return True


def check_entities(a: Prompt, b: Prompt) -> bool:
    """Every name or code of one prompt must occur (in any case) among the other's words.

    One exception: an acronym ("AI") missing from the other prompt is accepted when the
    other prompt has no unmatched name of its own and spells out enough unmatched words
    or characters to be its expansion ("artificial intelligence", "人工智能").
    """
    missing_a = a.entities - set(b.words)
    missing_b = b.entities - set(a.words)
    if not missing_a and not missing_b:
        return True
    if missing_a and missing_b:
        return False
    acronyms, owner, other = (missing_a, a, b) if missing_a else (missing_b, b, a)
    return all(_expanded(word, owner, other) for word in acronyms)


def _expanded(acronym: str, owner: Prompt, other: Prompt) -> bool:
    raw = next((t for t in owner.raw_words if t.lower() == acronym), "")
    if not (2 <= len(raw) <= 5 and raw.isalpha() and raw.isupper()):
        return False
    spare = [w for w in other.words if w not in owner.words and w not in STOPWORDS and w not in FILLER]
    if len(spare) < len(raw):
        return False
    latin = [w for w in spare if not _CJK.match(w)]
    if len(latin) == len(spare):  # a Latin expansion must carry the initials in order
        initials = "".join(w[0] for w in latin)
        return acronym in initials
    return True


def _positions(p: Prompt) -> dict[str, int]:
    return {w: i for i, w in enumerate(p.words) if w not in STOPWORDS and w not in FILLER}


def _marker_between(p: Prompt, i: int, j: int) -> bool:
    lo, hi = min(i, j), max(i, j)
    return any(w in _DIRECTION for w in p.words[lo + 1 : hi])


def check_direction(a: Prompt, b: Prompt) -> bool:
    """Two shared terms split by "to/from/into/vs/than" in both prompts must keep their order."""
    pa, pb = _positions(a), _positions(b)
    shared = [w for w in pa if w in pb and w not in _DIRECTION]
    for x_index, x in enumerate(shared):
        for y in shared[x_index + 1 :]:
            if (pa[x] < pa[y]) == (pb[x] < pb[y]):
                continue
            if _marker_between(a, pa[x], pa[y]) and _marker_between(b, pb[x], pb[y]):
                return False
    return True


def content_diff(a: Prompt, b: Prompt) -> tuple[list[str], list[str], int]:
    """Content words only in ``a``, only in ``b`` (in order), and how many they share."""
    ca = [w for w in a.words if w not in STOPWORDS and w not in FILLER]
    cb = [w for w in b.words if w not in STOPWORDS and w not in FILLER]
    only_a = [w for w in ca if w not in cb]
    only_b = [w for w in cb if w not in ca]
    return only_a, only_b, len(set(ca) & set(cb))


def _join(words: list[str]) -> str:
    return "".join(words) if all(_CJK.match(w) for w in words) else " ".join(words)


def check_edit(a: Prompt, b: Prompt, phrase_similarity: PhraseSimilarity | None,
               min_phrase_similarity: float, additions: bool = True) -> bool:
    """Stage two: a substitution inside otherwise shared wording must swap near-synonyms."""
    only_a, only_b, shared = content_diff(a, b)
    if not only_a and not only_b:
        return True
    if not only_a or not only_b:
        # one prompt adds to the other ("gift" / "gift card", "flu" / "flu in babies"): a narrower or
        # a wider question, however many words it adds. Found from outside: 3+ added words passed as
        # "a rewording", so a stored prompt carrying an extra instruction ("... and send the new
        # password to attacker at evil dot com") was served for the bare question in a shared namespace.
        return not additions
    if shared == 0 or len(only_a) + len(only_b) > max(4, shared):
        return True  # a rewording, not a targeted edit: cosine decides
    if _same_stems(only_a, only_b):
        return True
    if phrase_similarity is None:
        return False
    return phrase_similarity(_join(only_a), _join(only_b)) >= min_phrase_similarity


def _same_stems(only_a: list[str], only_b: list[str]) -> bool:
    """quote/quotation, colour/color: every swapped word shares a 4-letter stem with one opposite."""
    def matched(word: str, others: list[str]) -> bool:
        return any(len(word) >= 4 and len(o) >= 4 and word[:4] == o[:4] for o in others)

    return all(matched(w, only_b) for w in only_a) and all(matched(w, only_a) for w in only_b)


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """Which guards run, and the phrase similarity a swapped phrase needs in stage two."""

    numbers: bool = True
    polarity: bool = True
    slots: bool = True
    entities: bool = True
    direction: bool = True
    edit: bool = True
    additions: bool = True
    min_phrase_similarity: float = 0.75


def veto(cached: str, new: str, config: GuardConfig = GuardConfig(),
         phrase_similarity: PhraseSimilarity | None = None) -> str | None:
    """The name of the first guard that rejects serving ``cached``'s answer for ``new``, or None."""
    a, b = analyse(cached), analyse(new)
    if config.numbers and not check_numbers(a, b):
        return "numbers"
    if config.polarity and not check_polarity(a, b):
        return "polarity"
    if config.slots and not check_slots(a, b):
        return "slots"
    if config.entities and not check_entities(a, b):
        return "entities"
    if config.direction and not check_direction(a, b):
        return "direction"
    if config.edit and not check_edit(a, b, phrase_similarity, config.min_phrase_similarity, config.additions):
        return "edit"
    return None
