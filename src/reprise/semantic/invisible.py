"""What an embedding model cannot see of a prompt: where its score is no evidence.

Found from outside: USE's tokenizer maps every character outside its vocabulary (Amharic,
most emoji, rarer Chinese characters and Korean syllables, control characters) to one
unknown token, so ``ሀሀ ሀሀሀ ሀሀሀሀሀ?`` and ``ዛሬ ዝናብ ይዘንባል?`` are the same token sequence
and score 1.0000, as do ``🦄🦄`` and ``🐍🐍``; one was served for the other, across tenants
in a shared namespace. Its normaliser (NFKC) also folds ``x²`` into ``x2`` and drops
zero-width characters.

A prompt's *invisible part* is those characters, in order: the ones the model reads as the
unknown token or drops (asked of the model when it can tell, :class:`KnowsItsVocabulary`;
else a stand-in: symbols such as emoji, private-use, unassigned and control characters),
and the ones its NFKC folds into something else that matters (``²``; not full-width or
half-width forms, ``？`` / ``?``, nor punctuation); and its *layout*, the whitespace runs
other than one plain space inside it (line breaks, indentation, double spaces), which USE
does not see at all. When two prompts' invisible parts differ,
the score says nothing about that difference, so the candidate is not served when

- the score is a near-copy's (>= ``NEAR_COPY_FROM``): what the model sees is all but the
  same, so the difference is all in what it does not; or
- the invisible part is at least :data:`UNSEEN_SHARE` of either prompt: the score is about
  too little of it.

Below both, the visible text differs too and the score still ranks: a strict rule (any
difference) blocked 24% of the Korean duplicates served at threshold 0.75 (USE does not know
``뭐``, ``좀``, ``봐``), for 3 of 20 wrong answers (kor-qpair; PAWS-X: 46 duplicates for 87
wrong at 0.75, none at 0.98, where it removes 2 wrong answers either way).

Pure: no I/O. A character's verdict is memoised (bounded), and ASCII takes one ``str.translate``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

#: Share of a prompt (non-space characters) from which an invisible difference is never served.
UNSEEN_SHARE: Final = 0.25


@runtime_checkable
class KnowsItsVocabulary(Protocol):
    """An embedder that can say which characters of a text it does not see."""

    def unseen(self, text: str) -> str:
        """The characters of ``text`` read as the unknown token or dropped, in order."""
        ...


#: Unicode categories taken as unseen by a model whose vocabulary is unknown.
_UNSEEN_CATEGORIES: Final = frozenset({"So", "Sk", "Co", "Cn", "Cs", "Cc", "Cf"})

#: Decomposition tags of folds that do not change what a prompt asks.
_HARMLESS_FOLDS: Final = ("<wide>", "<narrow>")


def generic_sees(char: str) -> bool:
    """The stand-in for a model of unknown vocabulary: letters, digits, marks, punctuation and
    mathematical / currency signs are seen; symbols, private-use, unassigned, controls are not."""
    return char.isspace() or unicodedata.category(char) not in _UNSEEN_CATEGORIES


@functools.lru_cache(maxsize=1 << 16)  # bounded: a client may send every code point
def _folded(char: str) -> bool:
    """NFKC changes ``char`` into something else that matters (``²`` -> ``2``)."""
    if unicodedata.normalize("NFKC", char) == char or unicodedata.category(char)[0] in "PZ":
        return False  # unchanged, or punctuation / a space (``？`` -> ``?``, ``…`` -> ``...``)
    return not unicodedata.decomposition(char).startswith(_HARMLESS_FOLDS)


@functools.lru_cache(maxsize=1 << 16)
def _generic_unseen_char(char: str) -> bool:
    return not generic_sees(char)


_ASCII_SEEN: Final = {i: None for i in range(128) if generic_sees(chr(i))}


def generic_unseen(text: str) -> str:
    """The stand-in's unseen characters of ``text``, in order."""
    if text.isascii():
        return text.translate(_ASCII_SEEN)
    return "".join(filter(_generic_unseen_char, text))


class InvisibleParts:
    """The invisible parts of prompts for one model (see the module's doc)."""

    def __init__(self, unseen: Callable[[str], str]) -> None:
        self._unseen = unseen

    def of(self, text: str) -> str:
        """The characters of ``text`` the model does not see faithfully: folded ones, then unseen ones."""
        if text.isascii():  # NFKC leaves ASCII alone
            return self._unseen(text)
        return "".join(filter(_folded, text)) + self._unseen(text)

    def unmeasured(self, a: str, b: str, score: float, near_copy_from: float) -> bool:
        """The two prompts differ in what the model cannot see, where its score is no evidence.

        Found from outside: with whitespace alone compared, one full-width letter beside a
        dedented line defeated the whitespace veto (the fold is harmless, the dedent is not)."""
        left, right = self.of(a), self.of(b)
        left_layout, right_layout = layout(a), layout(b)
        if left == right and left_layout == right_layout:
            return False
        if score >= near_copy_from:
            return True
        return any(len(part) + sum(map(len, runs)) >= UNSEEN_SHARE * _visible_length(text)
                   for part, runs, text in ((left, left_layout, a), (right, right_layout, b)) if part or runs)


_LAYOUT = re.compile(r"\s{2,}|[^\S ]")


def layout(text: str) -> tuple[str, ...]:
    """The whitespace runs inside ``text`` other than one plain space, in order (outer whitespace
    is left out: a near-verbatim repeat may add or drop it)."""
    return tuple(_LAYOUT.findall(text.strip()))


def _visible_length(text: str) -> int:
    return len(text) - sum(map(str.isspace, text))


def invisible_parts_for(embedder: object) -> InvisibleParts:
    """The embedder's own vocabulary when it tells (:class:`KnowsItsVocabulary`), else the stand-in."""
    if isinstance(embedder, KnowsItsVocabulary):
        return InvisibleParts(embedder.unseen)
    return _GENERIC


_GENERIC: Final = InvisibleParts(generic_unseen)
