"""The semantic driver: after an exact miss, find a scoped, guarded, earlier answer.

Storage design: a semantic hit is served from the *exact* store. On every stored
answer the gateway writes the exact entry as usual and, beside it, a vector record
(scope, exact key, prompt, embedding) in the vector store. A lookup embeds the final
user message, searches the request's scope only, judges each candidate
(:class:`~reprise.semantic.matcher.Matcher`) and reads the candidate's exact entry
through :meth:`AsyncCache.read`, so ``ttl``, ``s-maxage``, deletion and expiry apply
to semantic hits exactly as to exact ones; ``no-cache`` skips the lookup (the driver
only calls it when the plan reads), ``no-store`` skips the vector, and the namespace is
part of the scope. Nothing here is on the exact-hit path.

Embedding: an embedded model runs in a worker thread; a ``model_list`` entry
(:class:`~reprise.embeddings.base.AsyncEmbedder`) is awaited, with the request's cache
plan so its embeddings call is cached as that caller's own would be. One request
embeds its prompt at most once (the lookup's vector is reused to store), and a failed
embedding is not retried within the request.

Opt-in, a candidate in the model judge's band (below the threshold) is read first, then
served only if the judge model says "same" (:class:`~reprise.semantic.judge.ModelJudge`:
verdicts cached, calls bounded per lookup, in flight and in time). It judges a candidate
the scope search already found, so the scope's isolation is unchanged.

Fails open: a vector-store error, an embedding failure or a judge failure is a semantic
miss, logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from reprise.backends.vector import Vector, VectorRecord, VectorStore
from reprise.cache import AsyncCache
from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePlan
from reprise.core.scope import SemanticQuery, semantic_query
from reprise.embeddings.base import AsyncEmbedder
from reprise.errors import BackendError, UpstreamError
from reprise.outage import EMBED, READ, WRITE, Outage
from reprise.semantic.judge import CALLS_PER_LOOKUP, ModelJudge, Ruling
from reprise.semantic.matcher import ASK_MODEL_JUDGE, Matcher

log = logging.getLogger("reprise.semantic")

#: What a failing vector store or embedding model may raise; each is a semantic miss.
_FAULTS = (BackendError, UpstreamError, ValueError, RuntimeError, OSError)
#: The plan of an embedding made outside a request (read and store, no namespace or ttl).
_READ_WRITE = CachePlan(read=True, store=True, ttl=None, max_age=None, namespace=None)


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A semantic hit: the entry served, its exact key, the prompt it answered, the cosine."""

    entry: CacheEntry
    key: str
    prompt: str
    score: float
    judge: str | None = None
    """The judge model that accepted it (a candidate below the threshold); None: the threshold did."""


@dataclass(slots=True)
class SemanticStats:
    lookups: int = 0
    hits: int = 0
    stored: int = 0
    errors: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class SemanticRequest:
    """One request's scope and text, and its embedding once computed (reused to store)."""

    query: SemanticQuery
    plan: CachePlan | None = None
    vector: Vector | None = None
    match: SemanticMatch | None = None
    embed_failed: bool = False


class SemanticCache:
    """Scoped similarity lookups over a :class:`VectorStore`, answers from an :class:`AsyncCache`."""

    def __init__(self, matcher: Matcher, store: VectorStore, remote: AsyncEmbedder | None = None,
                 judge: ModelJudge | None = None) -> None:
        self.matcher = matcher
        self.store = store
        self.remote = remote
        """The model_list embedding model; None: the matcher's embedded model embeds."""
        self.judge = judge
        """The model judge of the band below the threshold; None: no band (the matcher's settings agree)."""
        self.stats = SemanticStats()
        self.outage = Outage(log, f"semantic cache {store.name}", "exact cache only")

    def prepare(self, body: dict[str, Any], plan: CachePlan) -> SemanticRequest | None:
        """The request's semantic query, or None when it is not eligible (pure, cheap)."""
        query = semantic_query(body, plan.namespace)
        return None if query is None else SemanticRequest(query, plan)

    async def lookup(self, request: SemanticRequest, cache: AsyncCache, max_age: float | None) -> CacheEntry | None:
        """The entry of the first acceptable candidate; records the match on ``request``."""
        self.stats.lookups += 1
        settings = self.matcher.settings
        vector = await self._vector(request)
        if vector is None:
            return None
        try:
            hits = await self.store.search(request.query.scope, vector, settings.k, settings.search_floor)
        except _FAULTS as exc:
            self._fault(exc, "search", READ)
            return None
        self.outage.succeeded(READ)
        judge_calls = 0
        for hit in hits:  # best first: candidates at or above the threshold come before the band
            score = hit.score
            if score < settings.threshold and (settings.judge_from is None or score < settings.judge_from):
                self._reject("threshold")  # a store's approximate floor let it through: no thread hop
                continue
            reason = await asyncio.to_thread(self.matcher.judge, hit.prompt, request.query.text, score)
            if reason is not None and reason != ASK_MODEL_JUDGE:
                self._reject(reason)
                continue
            entry = await cache.read(hit.key, max_age)
            if entry is None:
                continue  # the answer expired, was deleted, or is too old for s-maxage
            judged_by = None
            if reason == ASK_MODEL_JUDGE:  # read first: no judge call for an answer that is gone
                ruling = await self._ask_judge(request, hit.prompt, judge_calls < CALLS_PER_LOOKUP)
                judge_calls += ruling.called
                if not ruling.same:
                    self._reject(ruling.reason or "judge")
                    continue
                judged_by = self.judge.name if self.judge is not None else None
            self.stats.hits += 1
            request.match = SemanticMatch(entry, hit.key, hit.prompt, hit.score, judged_by)
            return entry
        return None

    async def _ask_judge(self, request: SemanticRequest, cached: str, may_call: bool) -> Ruling:
        if self.judge is None:  # a band without a judge: build_semantic never makes one
            return Ruling(False, False, "threshold")
        namespace = request.plan.namespace if request.plan is not None else None
        return await self.judge.rule(namespace, cached, request.query.text, may_call)

    def _reject(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1

    async def remember(self, request: SemanticRequest, key: str, expires_at: float | None) -> None:
        """Index the stored answer ``key`` under the request's scope and prompt."""
        vector = await self._vector(request)
        if vector is None:
            return
        try:
            record = VectorRecord(request.query.scope, key, request.query.text, vector, expires_at)
            await self.store.upsert(record)
        except _FAULTS as exc:
            self._fault(exc, "upsert", WRITE)
            return
        self.outage.succeeded(WRITE)
        self.stats.stored += 1

    async def aclose(self) -> None:
        await self.store.aclose()

    async def _vector(self, request: SemanticRequest) -> Vector | None:
        """The prompt's embedding, computed once per request; None (counted, logged) if it failed."""
        if request.vector is not None or request.embed_failed:
            return request.vector
        try:
            if self.remote is not None:
                rows = await self.remote.embed([request.query.text], request.plan or _READ_WRITE)
            else:
                rows = await asyncio.to_thread(self.matcher.embed, [request.query.text])
            request.vector = rows[0]
        except _FAULTS as exc:
            request.embed_failed = True
            model = self.remote.name if self.remote is not None else self.matcher.model_name
            self._fault(exc, f"embedding with {model!r}", EMBED)
            return None
        self.outage.succeeded(EMBED)
        return request.vector

    def _fault(self, exc: Exception, action: str, kind: str) -> None:
        self.stats.errors += 1
        self.outage.failed(kind, action, exc)
