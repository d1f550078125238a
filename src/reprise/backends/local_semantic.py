"""``type: local-semantic``: exact entries on disk plus an embedded vector index beside them.

Everything lives under ``semantic_cache_dir``: ``exact/`` holds the answers (the SQLite
:class:`~reprise.backends.disk.DiskBackend`), ``vectors/`` the embedded index
(:class:`~reprise.backends.embedded_vector.LocalVectorStore`). Works with nothing
beyond ``pip install 'reprise[semantic]'``.
"""

from __future__ import annotations

from pathlib import Path

from reprise.backends.base import Backend
from reprise.backends.disk import DiskBackend
from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.vector import VectorStore


class LocalSemanticBackend:
    """Factory for the exact store and the vector store of a ``local-semantic`` cache."""

    @classmethod
    def from_params(cls, params: object) -> Backend:
        directory = Path(getattr(params, "semantic_cache_dir", ".reprise_semantic"))
        return DiskBackend(directory=directory / "exact", max_bytes=getattr(params, "max_bytes", 2**30))

    @classmethod
    def vector_store(cls, params: object, dim: int, backend: Backend) -> VectorStore:
        directory = Path(getattr(params, "semantic_cache_dir", ".reprise_semantic"))
        return LocalVectorStore(directory / "vectors", dim)
