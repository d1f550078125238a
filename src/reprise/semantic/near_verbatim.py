"""Near-verbatim repeats: the same words, differing only in case, spacing or closing punctuation.

Such a prompt asks what the stored one asked, whatever the embedding says: USE is case-
and punctuation-sensitive, and scored fow-cache's near repeats ("What is HTTP/2?" and
"what is http/2") between 0.67 and 1.0, so at the default threshold (0.999, which the
adversarial sets demand) 14 of its 15 such duplicate pairs were not served. A candidate
whose prompt is a near-verbatim repeat of the new one is judged as if its similarity were
1.0. No labelled non-duplicate pair in any of the four sets is one (2026-12-04).

Deliberately narrow: only letter case (``str.lower``, not ``casefold``, which folds
German ``Maße`` "dimensions" into ``Masse`` "mass"), runs of whitespace, and punctuation
at either end (``?!.`` and their CJK forms, ``…``, ``~``). Punctuation inside a prompt is
kept, because it can carry the question: ``2+2`` vs ``2-2``, ``C++`` vs ``C``, ``-5`` vs ``5``.
Pure.
"""

from __future__ import annotations

import re

#: Candidates are fetched down to this cosine so a near-verbatim repeat below the threshold is
#: seen at all (14 of the 15 such pairs in fow-cache score at least this with USE).
NEAR_VERBATIM_FLOOR = 0.80

_SPACES = re.compile(r"\s+")
_ENDS = " \t\r\n?!.。？！…~～"


def normalised(text: str) -> str:
    """``text`` lower-cased, its whitespace runs made one space, end punctuation and spaces dropped."""
    return _SPACES.sub(" ", text.lower()).strip(_ENDS)


def near_verbatim(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are the same words (see the module's doc); never for empty text."""
    if a == b:
        return bool(a.strip())
    left = normalised(a)
    return bool(left) and left == normalised(b)
