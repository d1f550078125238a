"""Shipped semantic defaults, chosen on the tune half of the labelled data (bench/semantic_quality.py).

A candidate found by the vector index is served only if, in order:

1. its cosine is at least ``threshold`` (by the retrieval model);
2. no false-hit guard vetoes it (:mod:`reprise.core.guards`);
3. when its cosine is below ``verify_below``, a second model (the verifier) also
   scores the two prompts at least ``verify_threshold``. The uncertain band is where
   plain cosine cannot tell paraphrases from traps; a second, independently trained
   model catches most of what the first gets wrong there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reprise.core.guards import GuardConfig

#: Retrieval threshold per embedded model when ``similarity_threshold`` is not set.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "use-multilingual-v3": 0.70,
    "multilingual-e5-small": 0.93,
}
#: Default verifier per retrieval model (None: no verification band).
DEFAULT_VERIFIERS: dict[str, str | None] = {
    "use-multilingual-v3": "multilingual-e5-small",
    "multilingual-e5-small": None,
}
#: Threshold for a remote embedding model named from model_list (no measurement possible):
#: high on purpose, since an unmeasured model's cosine scale is unknown (docs/semantic.md).
REMOTE_THRESHOLD = 0.90
#: Top of the uncertain band: a candidate below this cosine needs the verifier's agreement.
VERIFY_BELOW = 0.85


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    """How candidates are judged; see the module docstring for the order."""

    threshold: float = 0.70
    verify_below: float = 0.85
    verify_threshold: float = 0.93
    k: int = 4
    guards: GuardConfig = field(default_factory=GuardConfig)


def default_settings(model: str, threshold: float | None = None) -> SemanticSettings:
    """Shipped settings for an embedded model; an explicit ``threshold`` replaces the default."""
    base = DEFAULT_THRESHOLDS.get(model, REMOTE_THRESHOLD)
    chosen = base if threshold is None else threshold
    return SemanticSettings(threshold=chosen, verify_below=max(chosen, VERIFY_BELOW))


def remote_settings(threshold: float | None, verified: bool) -> SemanticSettings:
    """Settings for a ``model_list`` embedding model: :data:`REMOTE_THRESHOLD` unless set.

    The verifier band exists only when a verifier is named explicitly (``verified``):
    its bounds were measured on USE's scale, and without a verifier a band would only
    raise the effective threshold to 0.85 behind the user's back.
    """
    chosen = REMOTE_THRESHOLD if threshold is None else threshold
    return SemanticSettings(threshold=chosen, verify_below=max(chosen, VERIFY_BELOW) if verified else chosen)
