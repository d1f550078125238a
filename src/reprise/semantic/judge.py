"""The model judge: a ``model_list`` chat model asked about candidates in the uncertain band.

Issue 13 item 3 measured every embedded second stage (word-list guards, the e5 verifier, a
learned pair classifier) and none transferred to data it was not tuned on; an LLM asked
"do these two prompts ask the same thing?" is the one option left, and it cannot be
measured on this project's machines (no LLM runs here), so it is opt-in
(``semantic_cache_judge_model``). It is asked only about candidates whose cosine is in
``[semantic_cache_judge_min_similarity, threshold)``; at or above the threshold a
candidate is served as before, below the band it is a miss.

Bounded, since every call sits on a request's path and clients choose the prompts:

* a verdict is cached in memory (:class:`VerdictCache`: judge model, namespace and both
  prompts in order; :data:`VERDICT_ENTRIES` entries, :data:`VERDICT_TTL` seconds), so a
  repeated pair costs one call; an error or a timeout is never cached;
* at most :data:`CALLS_PER_LOOKUP` calls per lookup (the driver stops at the first "same");
* each call has a timeout, and at most ``max_concurrent`` are in flight in a process:
  past it the candidate is not judged (a miss), never queued;
* prompts longer than :data:`~reprise.semantic.judge_prompt.MAX_JUDGED_CHARS` are not sent.

Every failure (an HTTP error, a refused connection, a timeout, an answer that is not a
chat completion) is a miss, counted and logged once per outage. Outcomes are counted in
:class:`JudgeStats` (``/metrics``: ``reprise_semantic_judge_*``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reprise.errors import RepriseError
from reprise.outage import Outage
from reprise.semantic.judge_prompt import judge_body, judgeable, parse_verdict, verdict_key

log = logging.getLogger("reprise.semantic")
_CALL = "call"
"""The judge's one kind of operation (:class:`~reprise.outage.Outage`)."""

#: The gateway's call of the judge's deployment: an OpenAI chat body (no model) -> the
#: completion's JSON. Raises (RepriseError, OSError, ...) when there is no usable answer.
JudgeCall = Callable[[dict[str, Any]], Awaitable[bytes]]

#: Verdicts kept in memory (32-byte keys: ~150 bytes an entry with the dict's overhead).
VERDICT_ENTRIES = 10_000
#: How long a verdict is reused. A verdict is about two texts, not an answer, so it does not
#: go stale with the answer; the bound is for a judge model whose deployment changes.
VERDICT_TTL = 3600.0
#: Judge calls one lookup may make (verdicts from the cache are free): with ``k`` = 4
#: candidates, the two best in the band are asked at most.
CALLS_PER_LOOKUP = 2


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    """Which model judges, and its bounds (``semantic_cache_judge_*`` keys)."""

    model: str
    timeout: float = 5.0
    max_concurrent: int = 16


class Ruling(NamedTuple):
    """The judge's answer for one candidate: serve it (``same``), whether a call was made, and
    the reason it is not served (``judge`` said different or unclear, ``judge-error``, ...)."""

    same: bool
    called: bool
    reason: str | None = None


@dataclass(slots=True)
class JudgeStats:
    """Counts behind ``/metrics``: calls by verdict, verdicts reused, candidates not judged."""

    calls: dict[str, int] = field(default_factory=dict)
    """Calls made, by verdict: same, different, unclear, error, timeout."""
    cached: dict[str, int] = field(default_factory=dict)
    """Verdicts answered from the verdict cache: same, different."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Band candidates not judged: busy (concurrency bound), limit (calls per lookup), too_long."""


def _count(table: dict[str, int], name: str) -> None:
    table[name] = table.get(name, 0) + 1


class VerdictCache:
    """Bounded, expiring memory of verdicts: least recently used first out when full."""

    def __init__(self, entries: int = VERDICT_ENTRIES, ttl: float = VERDICT_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries, self.ttl, self.clock = entries, ttl, clock
        self._items: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> bool | None:
        """The verdict (True: same) if one is remembered and fresh, else None."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self.clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: bytes, same: bool) -> None:
        self._items[key] = (self.clock() + self.ttl, same)
        self._items.move_to_end(key)
        while len(self._items) > self.entries:
            self._items.popitem(last=False)


class ModelJudge:
    """Asks the judge model about one candidate at a time, within the bounds above."""

    def __init__(self, settings: JudgeSettings, call: JudgeCall, verdicts: VerdictCache | None = None) -> None:
        self.settings = settings
        self.call = call
        self.verdicts = verdicts or VerdictCache()
        self.stats = JudgeStats()
        self._in_flight = 0
        self.outage = Outage(log, f"semantic judge {settings.model!r}", "candidates in its band are misses")

    @property
    def name(self) -> str:
        return self.settings.model

    async def rule(self, namespace: str | None, cached: str, new: str, may_call: bool = True) -> Ruling:
        """Whether ``cached``'s answer may be served for ``new``; ``may_call`` False: cache only."""
        key = verdict_key(self.settings.model, namespace, cached, new)
        known = self.verdicts.get(key)
        if known is not None:
            _count(self.stats.cached, "same" if known else "different")
            return Ruling(known, False, None if known else "judge")
        if not judgeable(cached, new):
            return self._skip("too_long")
        if not may_call:
            return self._skip("limit")
        if self._in_flight >= self.settings.max_concurrent:
            return self._skip("busy")
        self._in_flight += 1
        try:
            verdict = await self._ask(cached, new)
        finally:
            self._in_flight -= 1
        _count(self.stats.calls, verdict)
        if verdict in ("error", "timeout"):
            return Ruling(False, True, f"judge-{verdict}")
        self.verdicts.put(key, verdict == "same")
        return Ruling(verdict == "same", True, None if verdict == "same" else "judge")

    async def _ask(self, cached: str, new: str) -> str:
        """One call: its verdict, or ``error`` / ``timeout`` (logged once per outage)."""
        try:
            async with asyncio.timeout(self.settings.timeout):
                completion = await self.call(judge_body(cached, new))
            verdict: str = parse_verdict(completion)
        except TimeoutError as exc:
            self.outage.failed(_CALL, f"a call not answered within {self.settings.timeout:g}s", exc)
            return "timeout"
        except (RepriseError, OSError, ValueError, RuntimeError) as exc:
            self.outage.failed(_CALL, "a call", exc)
            return "error"
        self.outage.succeeded(_CALL)
        if verdict == "unclear":
            log.info("semantic judge %r answered neither yes nor no; not served", self.settings.model)
        return verdict

    def _skip(self, why: str) -> Ruling:
        _count(self.stats.skipped, why)
        return Ruling(False, False, f"judge-{why}")
