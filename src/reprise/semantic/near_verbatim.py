"""Near-verbatim repeats, and differences the embedding cannot see.

A *near-verbatim repeat* is the stored prompt again with only outer whitespace or a closing
question mark or full stop added or dropped ("How do I renew a passport?" / "How do I renew a
passport"). It was judged as similarity 1.0 whatever the embedding said (USE scored such
fow-cache pairs 0.90-1.0, under the strict default threshold); an outside round then found the
closing mark to be the question too often ("Does this regex match the empty string: a?" / "...:
a", "the type of 3." / "of 3", Kotlin's ``String?`` / ``String``, 0.92-0.97), so it is served
only on a score that clears the threshold like any other pair, and is merely exempt from the
near-copy veto (:func:`near_copy`): the score then is evidence, as for any paraphrase.

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
import unicodedata

_CLOSING = re.compile(r"[?？.。…][?？.。…!！]*\s*$")
_SPACE = re.compile(r"\s+")


def normalised(text: str) -> str:
    """``text`` without outer whitespace and without a closing run of ``? . 。 …`` (one that
    starts with ``!`` is kept: ``5!``)."""
    return _CLOSING.sub("", text.strip()).rstrip()


def near_verbatim(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are near-verbatim repeats (see the module's doc); never for empty text.

    A closing run is added or dropped, never swapped for another: found from outside, "Is this a
    question or a statement: You are coming with us?" / "... with us." and "Translate: You speak
    English?" / "... English." ask different things (the mark is the question)."""
    left = normalised(a)
    if not left or left != normalised(b):
        return False
    return _closing(a) == _closing(b) or not _closing(a) or not _closing(b)


def _closing(text: str) -> str:
    """The closing run of ``text`` that :func:`normalised` drops, without whitespace."""
    found = _CLOSING.search(text.strip())
    return "" if found is None else found.group().strip()


def differs_only_in_whitespace(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same characters but for whitespace inside them (not a near-verbatim repeat)."""
    seen_a, seen_b = unicodedata.normalize("NFKC", a), unicodedata.normalize("NFKC", b)  # as the model reads them
    return seen_a != seen_b and _SPACE.sub("", seen_a) == _SPACE.sub("", seen_b) and not near_verbatim(a, b)


#: Share of the longer prompt that a common beginning and end cover, from which two prompts are
#: near-copies: what differs is one local edit, and the embedding of the shared text outweighs it.
NEAR_COPY_SHARE = 0.5

#: The cosine from which a near-copy's score is no evidence: there an edit barely moves the
#: embedding (a report with another instruction 0.9997-0.9999, another emoji 1.0000, PAWS-X's
#: swaps 0.99+); below it a near-copy's score still ranks (Korean duplicates with one added
#: word score lower, and a veto at every score blocked 39% of kor-qpair's duplicates).
NEAR_COPY_FROM = 0.98


def near_copy(a: str, b: str) -> bool:
    """One prompt is the other with local edits: they share at least half of the longer one's text
    (a common beginning and end, or, wherever the edits are, its character 3-grams), yet are not
    near-verbatim repeats.

    Found from outside: the embedding of the shared text swamps the edit, so a pasted report with
    "Summarize" and the same report with "Translate into French" scored 0.9998, an emoji question
    and the same question about another emoji 1.0000; PAWS-X's swapped roles score 0.99+. Then a
    report ending "Is revenue up?" was served for the same report ending "Is revenue down?"
    (0.9998) once a ``.`` near the start became ``:``, which cut the common beginning: so shared
    text is counted wherever it is, not only at the ends. Whatever the cosine, such a pair is not
    served on a near-copy's score: the edit is the question, and the score says nothing about it.
    """
    if near_verbatim(a, b):
        return False
    # As the model reads them (found from outside: a report pasted in full-width forms, or in
    # NFD, shared no raw character with the same report in ASCII, or NFC, yet USE folds both).
    a, b = unicodedata.normalize("NFKC", a), unicodedata.normalize("NFKC", b)
    longer = max(len(a), len(b))
    if longer == 0:
        return False
    prefix = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        prefix += 1
    suffix = 0
    limit = min(len(a), len(b)) - prefix
    while suffix < limit and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    if (prefix + suffix) / longer >= NEAR_COPY_SHARE:
        return True
    left, right = _grams(a), _grams(b)
    return len(left & right) >= NEAR_COPY_SHARE * max(len(left), len(right))


def _grams(text: str) -> set[str]:
    """The character 3-grams of ``text`` with whitespace runs read as one space."""
    text = " ".join(text.split())
    return {text[i:i + 3] for i in range(max(1, len(text) - 2))}
