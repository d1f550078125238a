"""The semantic driver over a real AsyncCache and vector index, with a tiny fake embedder."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest

from reprise.backends.embedded_vector import LocalVectorStore
from reprise.backends.memory import MemoryBackend
from reprise.backends.vector import Vector, VectorHit, VectorRecord
from reprise.cache import AsyncCache
from reprise.core.guards import GuardConfig
from reprise.core.keys import chat_key_hash, storage_key
from reprise.core.policy import CachePlan, CachePolicy
from reprise.embeddings.base import Vectors, normalise_rows
from reprise.errors import BackendUnavailable
from reprise.semantic.cache import SemanticCache
from reprise.semantic.judge import JudgeSettings, ModelJudge
from reprise.semantic.matcher import Matcher
from reprise.semantic.settings import NO_GUARDS, SemanticSettings


class WordsEmbedder:
    """Bag of letters-only words: digits are invisible, so "order 1" and "order 2" score 1.0."""

    name = "words"
    dim = 64

    def embed(self, texts: Sequence[str]) -> Vectors:
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                rows[i, zlib.crc32(word.encode()) % self.dim] += 1
        return normalise_rows(rows)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()  # the vector index drops expired records by the real clock

    def __call__(self) -> float:
        return self.now


Parts = tuple[AsyncCache, "SemanticCache", Clock]


def plan(**changes: object) -> CachePlan:
    values: dict[str, object] = {"read": True, "store": True, "ttl": None, "max_age": None, "namespace": None}
    values.update(changes)
    return CachePlan(**values)  # type: ignore[arg-type]


def body(text: str, **params: object) -> dict[str, object]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **params}


async def store_answer(cache: AsyncCache, semantic: SemanticCache, text: str, p: CachePlan) -> str:
    request = semantic.prepare(body(text), p)
    assert request is not None
    key = storage_key(chat_key_hash(body(text)), p.namespace)
    entry = cache.make_entry(f'{{"answer": "{text}"}}'.encode(), p.ttl, {})
    await cache.write(key, entry)
    await semantic.remember(request, key, entry.expires_at)
    return key


@pytest.fixture()
async def parts(tmp_path: Path) -> AsyncIterator[tuple[AsyncCache, SemanticCache, Clock]]:
    clock = Clock()
    cache = AsyncCache(MemoryBackend(), CachePolicy(), clock=clock)
    matcher = Matcher(WordsEmbedder(), SemanticSettings(threshold=0.8, verify_below=0.0, guards=GuardConfig()))
    semantic = SemanticCache(matcher, LocalVectorStore(tmp_path, WordsEmbedder.dim))
    yield cache, semantic, clock
    await semantic.aclose()


async def lookup(cache: AsyncCache, semantic: SemanticCache, text: str, p: CachePlan, **params: object):  # type: ignore[no-untyped-def]
    request = semantic.prepare(body(text, **params), p)
    assert request is not None
    entry = await semantic.lookup(request, cache, p.max_age)
    return entry, request


async def test_hit_with_match_details(parts: Parts) -> None:
    cache, semantic, _ = parts
    key = await store_answer(cache, semantic, "what is the capital of france", plan())
    entry, request = await lookup(cache, semantic, "the capital of france, what is it", plan())
    assert entry is not None and b"capital of france" in bytes(entry.body)
    assert request.match is not None and request.match.key == key and request.match.score > 0.9
    assert semantic.stats.hits == 1


async def test_guards_veto_identical_looking_traps(parts: Parts) -> None:
    cache, semantic, _ = parts
    await store_answer(cache, semantic, "track order 48213", plan())
    entry, _ = await lookup(cache, semantic, "track order 48231", plan())
    assert entry is None and semantic.stats.rejected == {"numbers": 1}


async def test_scope_params_and_namespace_partition(parts: Parts) -> None:
    cache, semantic, _ = parts
    await store_answer(cache, semantic, "what is the capital of france", plan(namespace="a"))
    assert (await lookup(cache, semantic, "what is the capital of france", plan(namespace="b")))[0] is None
    assert (await lookup(cache, semantic, "what is the capital of france", plan(namespace="a"),
                         temperature=0.5))[0] is None
    assert (await lookup(cache, semantic, "what is the capital of france", plan(namespace="a")))[0] is not None


async def test_ttl_and_s_maxage_apply_through_the_exact_entry(parts: Parts) -> None:
    cache, semantic, clock = parts
    await store_answer(cache, semantic, "what is the capital of france", plan(ttl=60))
    clock.now += 30
    assert (await lookup(cache, semantic, "capital of france", plan(max_age=10)))[0] is None
    assert (await lookup(cache, semantic, "capital of france", plan()))[0] is not None
    clock.now += 31
    assert (await lookup(cache, semantic, "capital of france", plan()))[0] is None


async def test_deleted_answer_is_a_miss(parts: Parts) -> None:
    cache, semantic, _ = parts
    key = await store_answer(cache, semantic, "what is the capital of france", plan())
    await cache.delete(key)
    assert (await lookup(cache, semantic, "capital of france", plan()))[0] is None


class BrokenStore:
    name = "broken"

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        raise BackendUnavailable("down")

    async def upsert(self, record: VectorRecord) -> None:
        raise BackendUnavailable("down")

    async def delete(self, scope: str, key: str) -> bool:
        raise BackendUnavailable("down")

    async def aclose(self) -> None:
        pass


async def test_fails_open(tmp_path: Path) -> None:
    cache = AsyncCache(MemoryBackend())
    semantic = SemanticCache(Matcher(WordsEmbedder(), SemanticSettings()), BrokenStore())
    request = semantic.prepare(body("hello there"), plan())
    assert request is not None
    assert await semantic.lookup(request, cache, None) is None
    await semantic.remember(request, "k", None)
    assert semantic.stats.errors == 2


async def test_verified_top_k_serves_a_farther_candidate_over_a_nearer_wrong_one(parts: Parts) -> None:
    """Issue 13 item 4: the nearest candidate (cosine 1.0 here: digits are invisible to this
    embedder) asks about another order; the farther one that passes the judge is served,
    and the match names it."""
    cache, semantic, _ = parts
    nearer = await store_answer(cache, semantic, "track order 48213", plan())
    farther = await store_answer(cache, semantic, "track my order 48231", plan())
    hits = await semantic.store.search(semantic.prepare(body("x"), plan()).query.scope,  # type: ignore[union-attr]
                                       semantic.matcher.embed(["track order 48231"])[0], 4, 0.8)
    assert [h.key for h in hits] == [nearer, farther] and hits[0].score > hits[1].score
    entry, request = await lookup(cache, semantic, "track order 48231", plan())
    assert entry is not None and b"track my order 48231" in bytes(entry.body)
    assert request.match is not None and request.match.key == farther and request.match.score < 0.9
    assert semantic.stats.rejected == {"numbers": 1}


async def test_the_model_judge_judges_each_candidate_of_the_band_best_first(tmp_path: Path) -> None:
    """Verified top-k with the opt-in judge: below the threshold a candidate is served only on
    the judge's "same"; the nearer one it refuses loses to a farther one it accepts. At or above
    the threshold the judge is not asked."""
    asked: list[str] = []

    async def provider(judge_body: dict[str, object]) -> bytes:  # stands in for the judge's deployment
        question = str(judge_body["messages"][1]["content"])  # type: ignore[index]
        first_line = question.split("\n")[0]
        asked.append(first_line)
        reply = "yes" if "bathroom" in first_line else "no"
        return orjson.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})

    cache = AsyncCache(MemoryBackend(), CachePolicy(), clock=Clock())
    settings = SemanticSettings(threshold=0.95, verify_below=0.0, guards=NO_GUARDS, judge_from=0.5)
    semantic = SemanticCache(Matcher(WordsEmbedder(), settings), LocalVectorStore(tmp_path, WordsEmbedder.dim),
                             judge=ModelJudge(JudgeSettings("j"), provider))
    nearer = await store_answer(cache, semantic, "please fix the kitchen tap", plan())
    farther = await store_answer(cache, semantic, "can someone fix the leaking bathroom tap", plan())
    entry, request = await lookup(cache, semantic, "please fix the tap", plan())
    assert entry is not None and request.match is not None
    assert request.match.key == farther and request.match.judge == "j" and request.match.score < 0.95
    assert len(asked) == 2 and "kitchen" in asked[0]  # the nearer first, refused
    assert semantic.stats.rejected == {"judge": 1}
    entry, request = await lookup(cache, semantic, "please fix the kitchen tap?", plan())  # near-verbatim: 1.0
    assert request.match is not None and request.match.key == nearer and request.match.judge is None
    assert len(asked) == 2
    await semantic.aclose()

