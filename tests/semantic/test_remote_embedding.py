"""The semantic driver with a remote (async) embedding model and a store sized by its first vector."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.memory import MemoryBackend
from reprise.backends.vector import VectorRecord
from reprise.cache import AsyncCache
from reprise.core.keys import chat_key_hash, storage_key
from reprise.core.policy import CachePlan
from reprise.embeddings.base import Vectors
from reprise.errors import BackendError, UpstreamError
from reprise.semantic.cache import SemanticCache
from reprise.semantic.lazy_store import LazyVectorStore
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import remote_settings
from tests.semantic.test_semantic_cache import WordsEmbedder, body, plan


class RemoteWords:
    """Stands in for a provider's embedding model: bag of words, ``dim`` wide, may be down."""

    name = "remote-words"

    def __init__(self, dim: int = 64) -> None:
        self.words = WordsEmbedder()
        self.words.dim = dim
        self.calls: list[tuple[list[str], CachePlan]] = []
        self.down = False

    async def embed(self, texts: Sequence[str], plan: CachePlan) -> Vectors:
        self.calls.append((list(texts), plan))
        if self.down:
            raise UpstreamError("embedding model 'remote-words' answered HTTP 500", 500)
        return self.words.embed(texts)


def lazy_local(directory: Path) -> LazyVectorStore:
    return LazyVectorStore(lambda dim: LocalVectorStore(directory, dim), "local-semantic vectors")


def make(remote: RemoteWords, directory: Path) -> tuple[AsyncCache, SemanticCache]:
    matcher = Matcher(None, remote_settings(0.8, verified=False))
    return AsyncCache(MemoryBackend()), SemanticCache(matcher, lazy_local(directory), remote)


async def remember(cache: AsyncCache, semantic: SemanticCache, text: str, p: CachePlan) -> str:
    request = semantic.prepare(body(text), p)
    assert request is not None
    assert await semantic.lookup(request, cache, None) is None
    key = storage_key(chat_key_hash(body(text)), p.namespace)
    await cache.write(key, cache.make_entry(b'{"answer": 1}', p.ttl, {}))
    await semantic.remember(request, key, None)
    return key


async def test_lazy_store_is_sized_by_its_first_vector(tmp_path: Path) -> None:
    store = lazy_local(tmp_path)
    assert await store.delete("s", "k") is False and store.dim is None
    vector = np.ones(12, dtype=np.float32) / np.sqrt(12)
    await store.upsert(VectorRecord("s", "k", "p", vector))
    assert store.dim == 12 and store.name == "local-vectors"
    assert [hit.key for hit in await store.search("s", vector, 4, 0.5)] == ["k"]
    with pytest.raises(BackendError, match="12"):
        await store.search("s", np.ones(8, dtype=np.float32), 4, 0.5)
    await store.aclose()
    reopened = lazy_local(tmp_path)  # the persisted index replays at the learned size
    assert [hit.key for hit in await reopened.search("s", vector, 4, 0.5)] == ["k"]
    await reopened.aclose()


async def test_remote_model_hit_with_the_request_plan(tmp_path: Path) -> None:
    remote = RemoteWords()
    cache, semantic = make(remote, tmp_path)
    key = await remember(cache, semantic, "what is the capital of france", plan(namespace="team", ttl=60))
    assert len(remote.calls) == 1  # the lookup's vector was reused to store
    assert remote.calls[0][1].namespace == "team" and remote.calls[0][1].ttl == 60
    request = semantic.prepare(body("the capital of france, what is it"), plan(namespace="team"))
    assert request is not None
    assert await semantic.lookup(request, cache, None) is not None
    assert request.match is not None and request.match.key == key
    await semantic.aclose()


async def test_remote_model_failure_is_a_miss_not_retried_within_the_request(tmp_path: Path) -> None:
    remote = RemoteWords()
    cache, semantic = make(remote, tmp_path)
    await remember(cache, semantic, "what is the capital of france", plan())
    remote.down = True
    request = semantic.prepare(body("the capital of france, what is it"), plan())
    assert request is not None
    assert await semantic.lookup(request, cache, None) is None
    await semantic.remember(request, "k2", None)
    assert len(remote.calls) == 2 and semantic.stats.errors == 1 and semantic.stats.stored == 1
    remote.down = False
    again = semantic.prepare(body("the capital of france, what is it"), plan())
    assert again is not None and await semantic.lookup(again, cache, None) is not None  # recovered
    await semantic.aclose()


async def test_model_changing_its_dimension_fails_open(tmp_path: Path) -> None:
    remote = RemoteWords(dim=64)
    cache, semantic = make(remote, tmp_path)
    await remember(cache, semantic, "what is the capital of france", plan())
    remote.words.dim = 32  # the provider now serves another model under the same name
    request = semantic.prepare(body("the capital of france, what is it"), plan())
    assert request is not None
    assert await semantic.lookup(request, cache, None) is None
    assert semantic.stats.errors == 1
    await semantic.aclose()


def test_remote_settings_have_no_verifier_band_unless_a_verifier_is_named() -> None:
    assert remote_settings(None, verified=False).threshold == 0.90
    unverified = remote_settings(0.75, verified=False)
    assert unverified.verify_below == unverified.threshold == 0.75
    assert remote_settings(0.75, verified=True).verify_below == 0.85
