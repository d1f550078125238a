"""A vector store created on its first vector, for embedding models whose dimension is unknown.

A ``model_list`` embedding model (``semantic_cache_embedding_model: <model_name>``)
tells its dimension only when it first answers, and every vector store is created
with one (the local index sizes its matrix, Qdrant its collection). Probing the model
at start-up would make start-up depend on the provider being up; instead the store
is made from the first vector that reaches it, with no I/O before that. A later
vector of another size (the provider changed the model behind the name) is a
:class:`~reprise.errors.BackendError`, which the semantic driver treats as a miss.
"""

from __future__ import annotations

from collections.abc import Callable

from reprise.backends.vector import Vector, VectorHit, VectorRecord, VectorStore
from reprise.errors import BackendError

#: Makes the real store for a dimension (a backend's ``vector_store`` with params bound).
StoreFactory = Callable[[int], VectorStore]


class LazyVectorStore:
    """A :class:`VectorStore` that makes the real one, sized by the first vector it sees."""

    def __init__(self, factory: StoreFactory, name: str) -> None:
        self._factory = factory
        self._store: VectorStore | None = None
        self.name = name
        self.dim: int | None = None

    @property
    def inner(self) -> VectorStore | None:
        """The real store, once the first vector made it."""
        return self._store

    def _sized(self, vector: Vector) -> VectorStore:
        dim = int(vector.shape[-1])
        if self._store is None:
            self._store = self._factory(dim)
            self.dim = dim
            self.name = self._store.name
        elif dim != self.dim:
            raise BackendError(f"embedding of {dim} dimensions, the vector store has {self.dim}", self.name)
        return self._store

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        return await self._sized(vector).search(scope, vector, k, threshold)

    async def upsert(self, record: VectorRecord) -> None:
        await self._sized(record.vector).upsert(record)

    async def delete(self, scope: str, key: str) -> bool:
        # Before the first vector there is no store yet; a record an earlier run persisted
        # stays, and its answer's exact entry still decides whether it is ever served.
        return False if self._store is None else await self._store.delete(scope, key)

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()
