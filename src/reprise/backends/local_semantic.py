"""``type: local-semantic``: exact entries on disk plus an embedded vector index beside them.

Everything lives under ``semantic_cache_dir``: ``exact/`` holds the answers (the SQLite
:class:`~reprise.backends.disk.DiskBackend`), ``vectors/`` the embedded index
(:class:`~reprise.backends.embedded_vector.LocalVectorStore`). Works with nothing
beyond ``pip install 'reprise[semantic]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from reprise.backends.base import Backend
from reprise.backends.disk import DiskBackend
from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.registry import VectorStoreMaker
from reprise.backends.vector import VectorStore

if TYPE_CHECKING:
    from reprise.config.models import LocalSemanticCacheParams


def _vector_store(params: LocalSemanticCacheParams, dim: int, backend: Backend) -> VectorStore:
    return LocalVectorStore(
        Path(params.semantic_cache_dir) / "vectors", dim, max_vectors=params.max_vectors,
        max_vectors_per_scope=params.max_vectors_per_scope, max_bytes=params.max_index_bytes,
    )


class LocalSemanticBackend:
    """Registry entry: the exact store (a :class:`DiskBackend`) and the embedded vector index."""

    vector_store: ClassVar[VectorStoreMaker[LocalSemanticCacheParams]] = _vector_store

    @classmethod
    def from_params(cls, params: LocalSemanticCacheParams) -> Backend:
        return DiskBackend(directory=Path(params.semantic_cache_dir) / "exact", max_bytes=params.max_bytes)
