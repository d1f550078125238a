"""The judge of one candidate: threshold, then the guards, then the verifier in the uncertain band.

Below the threshold, in the model judge's band (opt-in), it only says "ask the model
judge" (:data:`ASK_MODEL_JUDGE`): that call is async and belongs to the driver.

Synchronous and CPU-bound (the guards embed swapped phrases, the verifier embeds both
prompts); the driver runs it in a worker thread. The quality benchmark calls the very
same :meth:`Matcher.judge`, so its figures are the gateway's.

With a ``model_list`` embedding model there is no local ``embedder`` (the driver
embeds through the gateway): the edit guard then has no phrase model, so a swap of
content words is vetoed unless the words share a stem (the 0.75 phrase cutoff is
calibrated on USE's scale and means nothing on an unmeasured model's).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reprise.core.guards import veto
from reprise.embeddings.base import Embedder, Vectors
from reprise.semantic.identifiers import identifiers_differ
from reprise.semantic.invisible import invisible_parts_for
from reprise.semantic.near_verbatim import NEAR_COPY_FROM, differs_only_in_whitespace, near_copy
from reprise.semantic.settings import SemanticSettings

#: :meth:`Matcher.judge`'s answer for a band candidate: not served unless the judge model says "same".
ASK_MODEL_JUDGE = "ask-model-judge"


class Matcher:
    """Embeds prompts for retrieval and decides whether a candidate may be served."""

    def __init__(self, embedder: Embedder | None, settings: SemanticSettings,
                 verifier: Embedder | None = None) -> None:
        self.embedder = embedder
        self.settings = settings
        self.verifier = verifier
        self.invisible = invisible_parts_for(embedder)

    @property
    def model_name(self) -> str:
        return "" if self.embedder is None else self.embedder.name

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self.embedder is None:
            raise RuntimeError("this matcher has no embedded model; its prompts are embedded remotely")
        return self.embedder.embed(texts)

    def phrase_similarity(self, a: str, b: str) -> float:
        rows = self.embed([a, b])
        return float(rows[0] @ rows[1])

    def verify(self, cached: str, new: str) -> float:
        """The verifier's cosine for the two prompts (0.0 without a verifier)."""
        if self.verifier is None:
            return 0.0
        rows = self.verifier.embed([cached, new])
        return float(np.clip(rows[0] @ rows[1], 0.0, 1.0))

    def judge(self, cached: str, new: str, score: float) -> str | None:
        """None to serve ``cached``'s answer for ``new``; else why not (``threshold``, a guard, ``verifier``).

        :data:`ASK_MODEL_JUDGE` when ``score`` is in the model judge's band (below the
        threshold, at least ``judge_from``) and the guards (if on) pass it: the driver then
        asks the judge model, whose "same" is the only way such a candidate is served.
        """
        settings = self.settings
        if differs_only_in_whitespace(cached, new):  # invisible to the embedding: its score is no evidence
            return "whitespace"
        if self.invisible.unmeasured(cached, new, score, NEAR_COPY_FROM):  # characters it does not see
            return "unseen-characters"
        in_band = score < settings.threshold
        if in_band and (settings.judge_from is None or score < settings.judge_from):
            return "threshold"
        phrases = None if self.embedder is None else self.phrase_similarity
        reason = veto(cached, new, settings.guards, phrases)
        if reason is not None:
            return reason
        if identifiers_differ(cached, new):  # exact content the embedding blurs
            return "identifiers"
        if score >= NEAR_COPY_FROM and near_copy(cached, new):  # the shared text outweighs the edit
            return "near-copy"
        if in_band:
            return ASK_MODEL_JUDGE
        if score < settings.verify_below and self.verify(cached, new) < settings.verify_threshold:
            return "verifier"
        return None
