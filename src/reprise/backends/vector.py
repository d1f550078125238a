"""The small interface every vector store implements (local NumPy index, Qdrant, Redis).

A vector store never holds answers: each record points at the exact key whose entry
holds the answer bytes, so expiry, ``s-maxage`` and deletion are decided by the exact
store and the core (a vector whose entry is gone or stale is simply a miss). ``scope``
is a hard filter: a search only ever sees records upserted with the same scope.
Every method may raise only :class:`~reprise.errors.BackendError`; the semantic
driver catches it and fails open (an exact-only cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """One remembered prompt: its scope, the exact key of its answer, its text and vector."""

    scope: str
    key: str
    prompt: str
    vector: Vector
    expires_at: float | None = None
    """When the answer expires (a space hint: the exact entry decides freshness)."""


@dataclass(frozen=True, slots=True)
class VectorHit:
    """A candidate: the answer's exact key, the prompt that was stored with it, its cosine."""

    key: str
    prompt: str
    score: float


@runtime_checkable
class VectorStore(Protocol):
    name: str

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        """Up to ``k`` records of ``scope`` with cosine >= ``threshold``, best first."""
        ...

    async def upsert(self, record: VectorRecord) -> None:
        """Insert, or replace the record with the same (scope, key)."""
        ...

    async def delete(self, scope: str, key: str) -> bool:
        """Remove one record; True if it existed."""
        ...

    async def aclose(self) -> None:
        """Flush and release files or connections. Idempotent."""
        ...
