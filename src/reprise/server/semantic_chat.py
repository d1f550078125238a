"""The chat handler's semantic steps: prepare, look up after an exact miss, remember, report.

Kept out of ``chat.py`` so the exact path reads as before: each step is a no-op (and
imports nothing heavy) when the gateway has no semantic layer. Headers on a semantic
hit: ``x-litellm-semantic-similarity`` (LiteLLM's name; the cosine in [0, 1]),
``x-reprise-cache-kind: semantic``, and for debugging ``x-reprise-semantic-match-key``
(the exact key whose answer was served) and ``x-reprise-semantic-match-prompt``
(the prompt it answered, percent-encoded UTF-8). The last two only when the matched entry
can only have been written by the caller's own tenant (or the caller is the master key):
in a shared namespace they would disclose another tenant's prompt. A hit below the
threshold that the model judge accepted also carries ``x-reprise-semantic-judge`` (the
judge's ``model_name``), so a client can tell a judged hit from one the cosine decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePlan, expiry_time
from reprise.core.tenancy import is_private

if TYPE_CHECKING:
    from reprise.semantic.cache import SemanticRequest
    from reprise.server.gateway import Gateway

SIMILARITY = b"x-litellm-semantic-similarity"
KIND = b"x-reprise-cache-kind"
MATCH_KEY = b"x-reprise-semantic-match-key"
MATCH_PROMPT = b"x-reprise-semantic-match-prompt"
JUDGE = b"x-reprise-semantic-judge"


class SemanticSlot:
    """One request's semantic state. Created only when the gateway has a semantic layer;
    does no work (not even hashing the scope) until an exact miss asks for a lookup."""

    __slots__ = ("gw", "body", "plan", "request", "disclose")

    def __init__(self, gw: Gateway, body: dict[str, Any], plan: CachePlan, disclose: bool) -> None:
        self.gw, self.body, self.plan, self.disclose = gw, body, plan, disclose
        self.request: SemanticRequest | None = None

    def _prepare(self) -> SemanticRequest | None:
        if self.request is None and self.gw.semantic is not None:
            self.request = self.gw.semantic.prepare(self.body, self.plan)
        return self.request

    async def lookup(self) -> CacheEntry | None:
        """After an exact miss: the entry of an acceptable earlier answer, or None."""
        semantic, cache = self.gw.semantic, self.gw.cache
        if semantic is None or cache is None or not self.plan.read:
            return None
        request = self._prepare()
        return None if request is None else await semantic.lookup(request, cache, self.plan.max_age)

    async def remember(self, key: str) -> None:
        """Index the answer the driver just stored under ``key``, before the response ends,
        so a paraphrase sent right after it can find it (read-your-writes)."""
        semantic, cache = self.gw.semantic, self.gw.cache
        if semantic is None or cache is None:
            return
        request = self._prepare()
        if request is not None:
            await semantic.remember(request, key, expiry_time(cache.clock(), self.plan.ttl))

    @property
    def similarity(self) -> float | None:
        """The cosine of the matched entry on a semantic hit (for metrics), else None."""
        match = None if self.request is None else self.request.match
        return None if match is None else float(match.score)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The semantic-hit headers, or none."""
        match = None if self.request is None else self.request.match
        if match is None:
            return []
        headers = [(KIND, b"semantic"), (SIMILARITY, f"{match.score:.4f}".encode())]
        if match.judge is not None:
            headers.append((JUDGE, quote(match.judge, safe="").encode("ascii")))
        if self.disclose:
            headers += [(MATCH_KEY, match.key.encode()),
                        (MATCH_PROMPT, quote(match.prompt[:512], safe=" ").encode("ascii"))]
        return headers


def slot(gw: Gateway, body: dict[str, Any], plan: CachePlan, tenant: str | None) -> SemanticSlot | None:
    """A slot when the gateway caches semantically and this request uses the cache."""
    if gw.semantic is None or not plan.uses_cache:
        return None
    return SemanticSlot(gw, body, plan, is_private(tenant, plan.namespace))
