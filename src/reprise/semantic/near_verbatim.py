"""Near-verbatim repeats, and differences the embedding cannot see.

A *near-verbatim repeat* is the stored prompt again with only outer whitespace or a closing
question mark or full stop added or dropped ("How do I renew a passport?" / "How do I renew a
passport"): it asks what the stored one asked, and is judged as similarity 1.0 whatever the
embedding says (USE scored such fow-cache pairs 0.90-1.0, under the strict default threshold).

Deliberately narrow, after an outside round found each wider form serving wrong answers:
letter case is *not* ignored (``'Hello' == 'hello'``, ``ASCII code of A`` / ``a``, base64,
``Turkey`` / ``turkey`` ask different things), nor a leading character (``.5``), nor a closing
``!`` (``What is 5!`` asks for a factorial), nor whitespace inside the prompt.

The other half: prompts that differ *only* in whitespace inside them are never served for
each other. USE does not see whitespace at all (a Python snippet and the same snippet with one
line dedented score 1.0000), so its score is no evidence there, and indentation, line breaks
and runs of spaces can be the question (code, Makefiles, "count the spaces").
Pure.
"""

from __future__ import annotations

import re

#: Candidates are fetched down to this cosine so a near-verbatim repeat below the threshold is seen.
NEAR_VERBATIM_FLOOR = 0.80

_CLOSING = re.compile(r"[?？.。…][?？.。…!！]*\s*$")
_SPACE = re.compile(r"\s+")


def normalised(text: str) -> str:
    """``text`` without outer whitespace and without a closing run of ``? . 。 …`` (one that
    starts with ``!`` is kept: ``5!``)."""
    return _CLOSING.sub("", text.strip()).rstrip()


def near_verbatim(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are near-verbatim repeats (see the module's doc); never for empty text."""
    left = normalised(a)
    return bool(left) and left == normalised(b)


def differs_only_in_whitespace(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same characters but for whitespace inside them (not a near-verbatim repeat)."""
    return a != b and _SPACE.sub("", a) == _SPACE.sub("", b) and not near_verbatim(a, b)
