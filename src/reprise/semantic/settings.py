"""Semantic defaults, measured by ``bench/semantic_quality.py`` across labelled sets (issue 13).

A candidate found by the vector index is served only if, in order:

1. its cosine is at least ``threshold`` (by the retrieval model); unset, the threshold
   comes from the wrong-answer budget (``semantic_max_wrong_rate``) and the model's
   shipped calibration curve (:mod:`reprise.semantic.calibration`);
2. opt-in (``semantic_cache_guards: true``): no false-hit guard vetoes it
   (:mod:`reprise.core.guards`);
3. opt-in (``semantic_cache_verifier_model`` named): when its cosine is below
   ``verify_below``, a second model (the verifier) also scores the pair at least
   ``verify_threshold``.

Opt-in (``semantic_cache_judge_model`` named), a candidate *below* ``threshold`` but at
least ``judge_from`` (the uncertain band) passes the guards (if on) and is then served
only if a ``model_list`` chat model says the two prompts ask the same thing
(:mod:`reprise.semantic.judge`). Without a judge there is no such band.

Why plain cosine is the default: at equal wrong rate, on a set nobody tuned them on
(PAWS-X Chinese), the guards and the verifier served no more duplicates than the
threshold alone (7.6% vs 7.7% at <= 2% wrong), short of the 5 points a stage must
earn to stay on by default; the word lists help only on the data they were written
against (docs/semantic.md, "Quality across datasets").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reprise.core.guards import GuardConfig

#: Every guard off: the default judge is the threshold alone.
NO_GUARDS = GuardConfig(numbers=False, polarity=False, slots=False, entities=False, direction=False,
                        edit=False, additions=False)

#: Retrieval threshold per embedded model when neither ``similarity_threshold`` nor a shipped
#: curve gives one (the curve, read at the wrong-answer budget, normally does).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "use-multilingual-v3": 0.999,
    "multilingual-e5-small": 0.93,
}
#: Default verifier per retrieval model (None: no verification band).
DEFAULT_VERIFIERS: dict[str, str | None] = {
    "use-multilingual-v3": None,
    "multilingual-e5-small": None,
}
#: Threshold for a remote embedding model named from model_list (no measurement possible):
#: high on purpose, since an unmeasured model's cosine scale is unknown (docs/semantic.md).
REMOTE_THRESHOLD = 0.90
#: Top of the uncertain band: a candidate below this cosine needs the verifier's agreement.
VERIFY_BELOW = 0.85
#: Bottom of the model judge's band per embedded model, when ``semantic_cache_judge_min_similarity``
#: is unset. USE at 0.70 still keeps 78%, 100% and 97% of the duplicate pairs of fow-en, ours-zh
#: and PAWS-X (docs/semantic.md, per-threshold table), while unrelated prompts score ~0.1, so
#: lower floors would buy few duplicates for many judge calls. e5's cosines crowd into 0.85-1.0
#: (an unrelated Chinese pair scores 0.86), so its floor is higher.
DEFAULT_JUDGE_FLOORS: dict[str, float] = {
    "use-multilingual-v3": 0.70,
    "multilingual-e5-small": 0.90,
}
#: The floor for a ``model_list`` embedding model (unmeasured scale): LiteLLM's usual threshold.
REMOTE_JUDGE_FLOOR = 0.70


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    """How candidates are judged; see the module docstring for the order."""

    threshold: float = 0.70
    verify_below: float = 0.85
    verify_threshold: float = 0.93
    k: int = 4
    guards: GuardConfig = field(default_factory=lambda: NO_GUARDS)
    judge_from: float | None = None
    """Bottom of the model judge's band ``[judge_from, threshold)``; None: no judge, no band."""

    @property
    def search_floor(self) -> float:
        """The lowest cosine worth fetching from the vector index: the band's bottom, else the threshold."""
        return self.threshold if self.judge_from is None else min(self.threshold, self.judge_from)


def default_settings(model: str, threshold: float | None = None, *, guards: bool = False,
                     verified: bool = False) -> SemanticSettings:
    """Settings for an embedded model; an explicit ``threshold`` replaces the default.

    ``guards`` turns the false-hit guards on; ``verified`` (a verifier is configured)
    opens the uncertain band below :data:`VERIFY_BELOW`. Without a verifier there is no
    band: every candidate at or above the threshold that the guards (if on) pass is served.
    """
    chosen = DEFAULT_THRESHOLDS.get(model, REMOTE_THRESHOLD) if threshold is None else threshold
    return SemanticSettings(threshold=chosen, verify_below=max(chosen, VERIFY_BELOW) if verified else chosen,
                            guards=GuardConfig() if guards else NO_GUARDS)


def remote_settings(threshold: float | None, verified: bool, guards: bool = False) -> SemanticSettings:
    """Settings for a ``model_list`` embedding model: :data:`REMOTE_THRESHOLD` unless set.

    The verifier band exists only when a verifier is named explicitly (``verified``):
    its bounds were measured on USE's scale, and without a verifier a band would only
    raise the effective threshold to 0.85 behind the user's back.
    """
    return default_settings("", REMOTE_THRESHOLD if threshold is None else threshold,
                            guards=guards, verified=verified)
