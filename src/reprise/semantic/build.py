"""Build the semantic layer from ``cache_params``: embedder, verifier, settings, vector store.

A cache type is semantic when its registered class declares a vector store
(:attr:`~reprise.backends.registry.BackendClass.vector_store`, which may share the exact
store's connection); the gateway binds it to the params and the exact store and hands
it here as a factory of one argument, the embedding size. Models are loaded here,
once per process, never per request.

The embedding model setting names either a ``model_list`` entry (as in LiteLLM, which
has no embedded models: the gateway calls that entry, cached like any embeddings call)
or one of Reprise's embedded models; when a name is both, the ``model_list`` entry
wins, so a LiteLLM config means the same thing here. Unset: the embedded default.
A ``model_list`` model's dimension is learned from its first answer
(:class:`~reprise.semantic.lazy_store.LazyVectorStore`), so start-up needs no provider.

``semantic_cache_judge_model`` must name a ``model_list`` entry (a chat model); the gateway
hands a caller of it here (``judges``), and a name it does not know refuses start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from reprise.embeddings.base import DEFAULT_EMBEDDER, EMBEDDERS, AsyncEmbedder, Embedder, load_embedder
from reprise.errors import ConfigError
from reprise.semantic.cache import SemanticCache
from reprise.semantic.calibration import shipped_curve
from reprise.semantic.judge import JudgeCall, JudgeSettings, ModelJudge
from reprise.semantic.lazy_store import LazyVectorStore, StoreFactory
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import (
    DEFAULT_JUDGE_FLOORS,
    DEFAULT_VERIFIERS,
    REMOTE_JUDGE_FLOOR,
    SemanticSettings,
    default_settings,
    remote_settings,
)

if TYPE_CHECKING:
    from reprise.config.models import SemanticCacheParams

log = logging.getLogger("reprise.semantic")

#: The gateway's lookup of a ``model_list`` name: an embedder calling it, or None if absent.
ModelListEmbedders = Callable[[str], AsyncEmbedder | None]
#: The gateway's lookup of a ``model_list`` chat model for the judge: a caller, or None if absent.
ModelListJudges = Callable[[str], JudgeCall | None]


def embedding_model_setting(params: SemanticCacheParams) -> tuple[str | None, str]:
    """(the params key that names the embedding model, its value); (None, default) if unset."""
    key, value = params.embedding_model_setting
    return (key, value) if value else (None, DEFAULT_EMBEDDER)


def build_semantic(params: SemanticCacheParams, make_store: StoreFactory,
                   model_list: ModelListEmbedders | None = None,
                   judges: ModelListJudges | None = None) -> SemanticCache:
    """The semantic layer for ``params``, its vectors kept in stores made by ``make_store(dim)``.

    ``model_list`` resolves a configured embedding model name to a ``model_list`` entry;
    a name found neither there nor among the embedded models is a :class:`ConfigError`
    naming the setting. ``judges`` does the same for ``semantic_cache_judge_model``.
    """
    field, model = embedding_model_setting(params)
    remote = model_list(model) if field is not None and model_list is not None else None
    judge = model_judge(params, judges)
    threshold = params.similarity_threshold
    if remote is not None:
        verifier = configured_verifier(params, None)
        if threshold is None:
            log.warning("%s: model_list entry %r embeds; similarity_threshold unset, using %.2f "
                        "(not measured for this model; measure and set it)", field, model,
                        remote_settings(None, False).threshold)
        store = LazyVectorStore(make_store, f"{params.type} vectors")
        settings = with_judge_band(remote_settings(threshold, verifier is not None, params.guards_on),
                                   params, judge, REMOTE_JUDGE_FLOOR)
        matcher = Matcher(None, settings, verifier)
        return SemanticCache(matcher, store, remote, judge)
    if model not in EMBEDDERS:
        raise ConfigError(
            f"embedding model {model!r} is neither a model_name in model_list nor an embedded "
            f"model ({', '.join(sorted(EMBEDDERS))})",
            f"litellm_settings.cache_params.{field}",
        )
    embedder = load_embedder(model)
    verifier = configured_verifier(params, DEFAULT_VERIFIERS.get(model))
    settings = with_judge_band(embedded_settings(model, params), params, judge,
                               DEFAULT_JUDGE_FLOORS.get(model, REMOTE_JUDGE_FLOOR))
    matcher = Matcher(embedder, settings, verifier)
    warn_if_over_budget(model, params)
    return SemanticCache(matcher, make_store(embedder.dim), judge=judge)


def model_judge(params: SemanticCacheParams, judges: ModelListJudges | None) -> ModelJudge | None:
    """The judge named by ``semantic_cache_judge_model`` (None if unset); an unknown name is a ConfigError."""
    name = params.semantic_cache_judge_model
    if name is None:
        return None
    call = judges(name) if judges is not None else None
    if call is None:
        raise ConfigError(f"judge model {name!r} is not a model_name in model_list (the judge is a chat "
                          "model the gateway calls, like any deployment)",
                          "litellm_settings.cache_params.semantic_cache_judge_model")
    settings = JudgeSettings(name, params.semantic_cache_judge_timeout, params.semantic_cache_judge_max_concurrent)
    return ModelJudge(settings, call)


def with_judge_band(settings: SemanticSettings, params: SemanticCacheParams, judge: ModelJudge | None,
                    default_floor: float) -> SemanticSettings:
    """``settings`` with the judge's band ``[floor, threshold)`` opened when there is a judge.

    An explicit floor at or above an explicit threshold is refused by the config model; a
    default floor at or above the threshold (an explicit ``similarity_threshold`` below
    it) leaves the band empty, which is said once at start-up.
    """
    if judge is None:
        return settings
    floor = params.semantic_cache_judge_min_similarity
    floor = default_floor if floor is None else floor
    if floor >= settings.threshold:
        log.warning("semantic_cache_judge_model %r is never asked: semantic_cache_judge_min_similarity %.2f "
                    "is not below the threshold %.3f (set it lower)", judge.name, floor, settings.threshold)
    return replace(settings, judge_from=floor)


def warn_if_over_budget(model: str, params: SemanticCacheParams) -> str | None:
    """Warn (and return the text) when an explicit threshold measured more wrong answers than the budget.

    An explicit ``similarity_threshold`` wins over ``semantic_max_wrong_rate``; a LiteLLM
    config often sets 0.7-0.8, which with the default judge (no guards since issue 13)
    answered 59-77% of fow-cache's traps wrongly. Said once at start-up, from the curve.
    """
    curve = shipped_curve(model)
    threshold = params.similarity_threshold
    point = None if curve is None or threshold is None else curve.at(threshold)
    if point is None or point.budget_rate <= params.semantic_max_wrong_rate:
        return None
    text = (f"similarity_threshold {threshold} on {model}: {point.wrong:.0%} of the calibration sets' "
            f"non-duplicate pairs ({point.budget_rate:.0%} in the worst set) were answered wrongly at that "
            f"threshold by cosine alone, over "
            f"semantic_max_wrong_rate {params.semantic_max_wrong_rate:.0%} (the guards, if on, lower it; "
            f"measure yours: reprise semantic eval)")
    log.warning("%s", text)
    return text


def embedded_settings(model: str, params: SemanticCacheParams) -> SemanticSettings:
    """How an embedded model's candidates are judged under ``params`` (the gateway's and
    ``reprise semantic eval``'s one source): explicit threshold, else the budget's."""
    threshold = params.similarity_threshold
    if threshold is None:
        threshold = budget_threshold(model, params)
    verified = (params.semantic_cache_verifier_model or DEFAULT_VERIFIERS.get(model) or "none") != "none"
    return default_settings(model, threshold, guards=params.guards_on, verified=verified)


def budget_threshold(model: str, params: SemanticCacheParams) -> float | None:
    """The threshold meeting ``semantic_max_wrong_rate`` on ``model``'s shipped curve (None: no curve).

    Only consulted when ``similarity_threshold`` is unset: an explicit threshold wins, as
    in LiteLLM, whose key it is.
    """
    curve = shipped_curve(model)
    return None if curve is None else curve.threshold_for(params.semantic_max_wrong_rate)


def configured_verifier(params: SemanticCacheParams, default: str | None) -> Embedder | None:
    """The verifier model: named in params, else ``default``; "none" or not installed: None."""
    name = params.semantic_cache_verifier_model or default
    if not name or name == "none":
        return None
    try:
        return load_embedder(name)
    except ConfigError:
        return None  # without it, the uncertain band is simply not served
