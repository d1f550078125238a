"""Build the semantic layer from ``cache_params``: embedder, verifier, settings, vector store.

A cache type is semantic when its registered class can make a vector store
(``vector_store(params, dim, backend)``, which may share the exact store's connection);
the exact store comes from its ``from_params`` as for every type. Models are loaded
here, once per process, never per request.
"""

from __future__ import annotations

from typing import Any

from reprise.embeddings.base import DEFAULT_EMBEDDER, EMBEDDERS, load_embedder
from reprise.errors import ConfigError
from reprise.semantic.cache import SemanticCache
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import DEFAULT_VERIFIERS, default_settings

#: The params field naming the embedding model, per LiteLLM type name.
_MODEL_FIELDS = (
    "semantic_cache_embedding_model",
    "qdrant_semantic_cache_embedding_model",
    "redis_semantic_cache_embedding_model",
)


def embedding_model_name(params: Any) -> str:
    for name in _MODEL_FIELDS:
        value = getattr(params, name, None)
        if value:
            return str(value)
    return DEFAULT_EMBEDDER


def build_semantic(params: Any, backend_class: Any, backend: Any) -> SemanticCache | None:
    """The semantic layer for ``params``, or None when the cache type is not semantic."""
    make_store = getattr(backend_class, "vector_store", None)
    if make_store is None:
        return None
    model = embedding_model_name(params)
    if model not in EMBEDDERS:
        raise ConfigError(
            f"embedding model {model!r}: only the embedded models {sorted(EMBEDDERS)} are "
            "supported for semantic caching in this version",
            f"litellm_settings.cache_params.{params.type}",
        )
    embedder = load_embedder(model)
    settings = default_settings(model, getattr(params, "similarity_threshold", None))
    verifier_name = getattr(params, "semantic_cache_verifier_model", None) or DEFAULT_VERIFIERS.get(model)
    verifier = None
    if verifier_name and verifier_name != "none":
        try:
            verifier = load_embedder(verifier_name)
        except ConfigError:
            verifier = None  # without it, the uncertain band is simply not served
    return SemanticCache(Matcher(embedder, settings, verifier), make_store(params, embedder.dim, backend))
