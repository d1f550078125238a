"""Build the semantic layer from ``cache_params``: embedder, verifier, settings, vector store.

A cache type is semantic when its registered class can make a vector store
(``vector_store(params, dim, backend)``, which may share the exact store's connection);
the exact store comes from its ``from_params`` as for every type. Models are loaded
here, once per process, never per request.

The embedding model setting names either a ``model_list`` entry (as in LiteLLM, which
has no embedded models: the gateway calls that entry, cached like any embeddings call)
or one of Reprise's embedded models; when a name is both, the ``model_list`` entry
wins, so a LiteLLM config means the same thing here. Unset: the embedded default.
A ``model_list`` model's dimension is learned from its first answer
(:class:`~reprise.semantic.lazy_store.LazyVectorStore`), so start-up needs no provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from reprise.embeddings.base import DEFAULT_EMBEDDER, EMBEDDERS, AsyncEmbedder, Embedder, load_embedder
from reprise.errors import ConfigError
from reprise.semantic.cache import SemanticCache
from reprise.semantic.lazy_store import LazyVectorStore
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import DEFAULT_VERIFIERS, default_settings, remote_settings

log = logging.getLogger("reprise.semantic")

#: The gateway's lookup of a ``model_list`` name: an embedder calling it, or None if absent.
ModelListEmbedders = Callable[[str], AsyncEmbedder | None]

#: The params field naming the embedding model, per LiteLLM type name.
_MODEL_FIELDS = (
    "semantic_cache_embedding_model",
    "qdrant_semantic_cache_embedding_model",
    "redis_semantic_cache_embedding_model",
)


def embedding_model_setting(params: Any) -> tuple[str | None, str]:
    """(the params field that names the embedding model, its value); (None, default) if unset."""
    for name in _MODEL_FIELDS:
        value = getattr(params, name, None)
        if value:
            return name, str(value)
    return None, DEFAULT_EMBEDDER


def embedding_model_name(params: Any) -> str:
    return embedding_model_setting(params)[1]


def build_semantic(params: Any, backend_class: Any, backend: Any,
                   model_list: ModelListEmbedders | None = None) -> SemanticCache | None:
    """The semantic layer for ``params``, or None when the cache type is not semantic.

    ``model_list`` resolves a configured embedding model name to a ``model_list`` entry;
    a name found neither there nor among the embedded models is a :class:`ConfigError`
    naming the setting.
    """
    make_store = getattr(backend_class, "vector_store", None)
    if make_store is None:
        return None
    field, model = embedding_model_setting(params)
    remote = model_list(model) if field is not None and model_list is not None else None
    threshold = getattr(params, "similarity_threshold", None)
    if remote is not None:
        verifier = _verifier(params, None)
        if threshold is None:
            log.warning("%s: model_list entry %r embeds; similarity_threshold unset, using %.2f "
                        "(not measured for this model; measure and set it)", field, model,
                        remote_settings(None, False).threshold)
        store = LazyVectorStore(lambda dim: make_store(params, dim, backend), f"{params.type} vectors")
        matcher = Matcher(None, remote_settings(threshold, verifier is not None), verifier)
        return SemanticCache(matcher, store, remote)
    if model not in EMBEDDERS:
        raise ConfigError(
            f"embedding model {model!r} is neither a model_name in model_list nor an embedded "
            f"model ({', '.join(sorted(EMBEDDERS))})",
            f"litellm_settings.cache_params.{field}",
        )
    embedder = load_embedder(model)
    settings = default_settings(model, threshold)
    matcher = Matcher(embedder, settings, _verifier(params, DEFAULT_VERIFIERS.get(model)))
    return SemanticCache(matcher, make_store(params, embedder.dim, backend))


def _verifier(params: Any, default: str | None) -> Embedder | None:
    """The verifier model: named in params, else ``default``; "none" or not installed: None."""
    name = getattr(params, "semantic_cache_verifier_model", None) or default
    if not name or name == "none":
        return None
    try:
        return load_embedder(name)
    except ConfigError:
        return None  # without it, the uncertain band is simply not served
