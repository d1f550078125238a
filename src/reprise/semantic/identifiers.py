"""Numbers and identifiers in a prompt must be the same for one prompt to be served for another.

Found from outside: USE places random hexadecimal strings close together (20 commit ids
against 20 others 0.986, 40 against 40 0.991) while they share few character 3-grams, so
"which of these commits is newest?" over one list was served for another list, and a
``sha256sum`` listing for another; and it reads "order 48213" and "order 48231" as all but
the same. A number or an identifier is exact content an embedding blurs, so the *tokens
that hold a digit* (``48213``, ``v2``, ``3f9a...``, ``2pm``) of the two prompts, as a
multiset, in the model's NFKC reading and with every script's digits read as 0-9, must be
equal; whatever the score, the candidate is not served otherwise. Measured on the four
labelled sets before it was written: it touches 5 of kor-qpair's 1,000 duplicates and 29 of
PAWS-X's 853 (none above cosine 0.98), and 94 / 57 of their non-duplicates.

Pure.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_TOKEN: Final = re.compile(r"\w*\d\w*|[A-Za-z_]{20,}")
"""A token holding a digit, or a run of 20 or more Latin letters (not ``\\w``: a Chinese clause
written without spaces is one ``\\w`` run, and such a rule blocked paraphrases of PAWS-X)."""


def _ascii_digit(match: re.Match[str]) -> str:
    return str(unicodedata.decimal(match.group(), 0))


_DIGIT: Final = re.compile(r"\d")


def identifiers(text: str) -> list[str]:
    """The tokens of ``text`` that hold a digit or run to 20 Latin letters or more, sorted (a
    multiset), as the model reads them. Found from outside: lists of letter-only keys
    (``sk_live_`` + 24 letters) scored 0.983 and a 1,935-residue protein sequence another's
    0.965-0.983; words of 20 letters are rare outside compounds."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _DIGIT.sub(_ascii_digit, text)
    return sorted(_TOKEN.findall(text))


def identifiers_differ(a: str, b: str) -> bool:
    """The two prompts do not hold the same numbers and identifiers."""
    return identifiers(a) != identifiers(b)
