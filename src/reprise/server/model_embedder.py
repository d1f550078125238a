"""The semantic layer's embedder for a ``model_list`` entry (LiteLLM's ``*_embedding_model``).

LiteLLM embeds the prompt for its semantic caches by calling the named model through
its router (https://docs.litellm.ai/docs/proxy/caching). Reprise does the same in
process, with no HTTP call to itself: :func:`~reprise.server.embeddings.embed_texts`
is the ``POST /embeddings`` path (deployment choice, the entry's timeout, the exact
cache, single-flight), so an identical prompt costs one provider call while its
entry lives. The rows come back L2-normalised, as the vector stores expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from reprise.core.policy import CachePlan
from reprise.embeddings.base import Vectors, normalise_rows
from reprise.errors import UpstreamError
from reprise.server.embeddings import embed_texts

if TYPE_CHECKING:
    from reprise.server.gateway import Gateway


class GatewayEmbedder:
    """Embeds with the ``model_list`` entry ``name`` through ``gateway`` (an :class:`AsyncEmbedder`)."""

    def __init__(self, gateway: Gateway, name: str) -> None:
        self.gateway = gateway
        self.name = name

    async def embed(self, texts: Sequence[str], plan: CachePlan) -> Vectors:
        # The request's namespace, ttl and no-store apply; its no-cache and s-maxage are
        # about the answer, not the prompt's embedding, which is always read if cached.
        plan = replace(plan, read=True, max_age=None)
        raw = await embed_texts(self.gateway, self.name, list(texts), plan)
        rows = [orjson.loads(vector) for vector in raw]
        if not rows or not all(_is_vector(row) and len(row) == len(rows[0]) for row in rows):
            raise UpstreamError(f"embedding model {self.name!r} did not answer with float vectors")
        return normalise_rows(rows)


def _is_vector(row: object) -> bool:
    return (isinstance(row, list) and len(row) > 0
            and all(isinstance(x, float | int) and not isinstance(x, bool) for x in row))
