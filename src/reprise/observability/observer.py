"""Counts and logs each API request: metrics, savings headers, one log line.

Told, not guessing: the server's ASGI edge (:mod:`reprise.server.observe`) opens a
:class:`RequestRecord` per ``/chat/completions`` and ``/embeddings`` request and hands it
to the handler, which reports once what the cache did (:meth:`RequestRecord.report`: hit,
miss or bypass, the key, the entry served and, for semantic hits, the similarity) before
it answers. At the response start the observer adds ``x-request-id`` and, on a hit with
known usage, ``x-reprise-saved-tokens`` and ``x-reprise-saved-usd``; when the request
ends it updates the metrics, the dashboard's time series and per-key hit counts, and
writes the log line. What only the driver knows (stores, coalesced requests, upstream
calls, backend faults) is the driver's :class:`~reprise.store_access.CacheStats`, read
at scrape time: each event is counted in one place.

Everything here is increments and dict lookups on one event loop: no locks, no I/O
besides the log line.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reprise.cache import AsyncCache
from reprise.config import GatewayConfig
from reprise.core.entry import CacheEntry
from reprise.core.tenancy import DEFAULT_PARTITION
from reprise.observability.gateway_metrics import GatewayMetrics
from reprise.observability.logs import AccessLog, format_line, logfmt_value
from reprise.observability.pricing import resolve_prices
from reprise.observability.series import Bucket, HitCounter, TimeSeries

_OTHER_MODEL = "_other"  # label for model names not in the config (bounded cardinality)
OTHER_NAMESPACE = "_other"  # label for namespaces not named in the config (bounded cardinality)
SETTLE_DELAY = 0.05
"""Seconds a finished request may wait to be counted and logged with others."""
_PLAIN_ROUTES = frozenset({"/chat/completions", "/v1/chat/completions", "/embeddings", "/v1/embeddings"})


class HasBody(Protocol):
    """A request whose parsed body is at hand on demand (server.chat.ChatRequest)."""

    @property
    def body(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class RequestRecord:
    """What the observer learns about one request while it runs."""

    request_id: str
    started: float
    route: str
    model: str = ""
    caller: str | None = None
    prompt: str | None = None
    entry: CacheEntry | None = None
    similarity: float | None = None
    status: int = 0
    cache: str | None = None
    key: str | None = None
    saved_prompt: int = 0
    saved_completion: int = 0
    saved_usd: float = 0.0
    elapsed: float = 0.0
    ended: float = 0.0

    def report(self, cache: str, key: str | None, entry: CacheEntry | None = None,
               similarity: float | None = None) -> None:
        """What the cache did for this request: called once by its handler, before it answers."""
        self.cache = cache
        self.key = key
        self.entry = entry
        self.similarity = similarity


def unobserved() -> RequestRecord:
    """A record for a request nobody observes (the gateway's own calls): reports go nowhere."""
    return RequestRecord("", 0.0, "")


class Observer:
    """Per-process observation state: metrics, time series, hit counts, access log."""

    def __init__(self, config: GatewayConfig, cache: AsyncCache | None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        settings = config.general_settings
        env_json = os.environ.get("REPRISE_JSON_LOGS", "").lower() in {"1", "true", "yes", "on"}
        self.json_logs = settings.json_logs or env_json
        self.log_prompts = settings.log_prompts
        self.metrics_require_auth = settings.metrics_require_auth
        policy_namespace = config.cache_params.namespace if config.cache_params is not None else None
        named = [*settings.metrics_namespaces, *settings.shared_namespaces]
        self.named_namespaces = frozenset([*named, policy_namespace] if policy_namespace else named)
        """Namespaces with their own metric label; the rest are ``_other`` (bounded series)."""
        self._namespace_labels: dict[str, str] = {}
        self._line_middles: dict[tuple[Any, ...], str] = {}
        """Memo of the access line's repeating middle part (see :meth:`_log_line`)."""
        self.prices = resolve_prices(config)
        self.models = frozenset(config.model_names())
        params = config.cache_params if config.cache_enabled else None
        self.semantic_configured = params is not None and params.type.endswith("semantic")
        self.cache = cache
        self.clock = clock
        self.timer = timer
        self.started = clock()
        self.metrics = GatewayMetrics(cache, self.started)
        self.metrics.initialize(sorted(self.models), (cache.policy.namespace or "") if cache else "")
        self.series = TimeSeries()
        self.hits = HitCounter()
        self.log = AccessLog(self.json_logs, settings.request_logs)
        # Request ids: a random per-process prefix and a counter (unique without a syscall per request).
        self._id_prefix = os.urandom(8).hex()
        self._ids = itertools.count(1)
        self._savings: dict[tuple[str, int, int], tuple[float, list[tuple[bytes, bytes]]]] = {}
        self._pending: list[RequestRecord] = []
        self._bucket_seconds = self.series.bucket_seconds
        self._bucket = Bucket(-(1 << 62))  # none yet: the first request asks the series
        """The time-series bucket counted into last; the series is asked again only when time moves on."""

    # -- per request ------------------------------------------------------------------

    def begin(self, route: str, request_id: str | None) -> RequestRecord:
        """Start a request's record; ``request_id`` is the client's (validated), else one is made."""
        return RequestRecord(request_id or f"{self._id_prefix}{next(self._ids) & 0xFFFFFFFF:08x}",
                             self.timer(), route)

    def note_request(self, record: RequestRecord, body: dict[str, Any], key_id: str) -> None:
        """Called once the body is parsed: model and caller (and the prompt if allowed)."""
        model = body.get("model")
        record.model = model if isinstance(model, str) and model in self.models else _OTHER_MODEL
        record.caller = key_id
        if self.log_prompts:
            record.prompt = _prompt_text(body)

    def note_model(self, record: RequestRecord, model: str, key_id: str, request: HasBody) -> None:
        """:meth:`note_request` for a body known by its facts: parsed only if prompts are logged."""
        record.model = model if model in self.models else _OTHER_MODEL
        record.caller = key_id
        if self.log_prompts:
            record.prompt = _prompt_text(request.body)

    def response_headers(self, record: RequestRecord, status: int,
                         headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """At the response start: note the status, add the request id and a hit's savings."""
        record.status = status
        headers.append((b"x-request-id", record.request_id.encode()))
        entry = record.entry
        if record.cache == "hit" and entry is not None:
            usage = entry.meta.get("usage")
            if isinstance(usage, dict):
                prompt, completion = _tokens(usage)
                record.saved_prompt, record.saved_completion = prompt, completion
                saving = self._savings.get((record.model, prompt, completion))
                if saving is None:
                    saving = self._saving(record.model, prompt, completion)
                record.saved_usd = saving[0]
                headers += saving[1]
        return headers

    def _saving(self, model: str, prompt: int, completion: int) -> tuple[float, list[tuple[bytes, bytes]]]:
        """The money and headers of a hit, memoised: hot entries repeat the same usage."""
        price = self.prices.get(model)
        usd = price.cost(prompt, completion) if price is not None else 0.0
        saving = (usd, [(b"x-reprise-saved-tokens", str(prompt + completion).encode()),
                        (b"x-reprise-saved-usd", f"{usd:.6f}".encode())])
        if len(self._savings) >= 4096:
            self._savings.clear()
        self._savings[(model, prompt, completion)] = saving
        return saving

    def end(self, record: RequestRecord) -> None:
        """Note the finished request; it is counted and logged with others within 50 ms.

        Counting a request one at a time, right after its answer, cost ~20 µs a hit
        under load (the code is cold by then); a batch of them costs a fraction of it.
        Every reader of the counts calls :meth:`settle` first, so nothing looks stale.
        """
        record.elapsed = self.timer() - record.started
        record.ended = self.clock()
        pending = self._pending
        pending.append(record)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_later(SETTLE_DELAY, self.settle)
            except RuntimeError:  # no loop: count now
                self.settle()

    def settle(self) -> None:
        """Count and log every finished request not yet counted.

        Exact hits are counted per (bucket, model, key) group, not one by one: under load a
        batch is mostly hits on a few hot keys, and counting each cost ~8% of a hit
        (callgrind). Their latencies still go into the histogram one by one; the time they
        saved is estimated against the mean upstream latency as of the batch's end.
        """
        pending, self._pending = self._pending, []
        if pending:
            log = self.log.enabled
            lines: list[str] = []
            groups: dict[tuple[int, str, str], _HitGroup] = {}
            bucket, seconds = self._bucket, self._bucket_seconds
            for record in pending:
                key = record.key
                if record.cache == "hit" and record.similarity is None and key is not None:
                    now = record.ended
                    if not bucket.start <= now < bucket.start + seconds:
                        bucket = self._bucket = self.series.current(now)
                    slot = (bucket.start, record.model, key)
                    group = groups.get(slot)
                    if group is None:
                        group = groups[slot] = _HitGroup(bucket)
                    group.add(record)
                    if log:
                        lines.append(self._log_line(record, "hit", record.elapsed))
                else:
                    line = self._count(record)
                    bucket = self._bucket
                    if line is not None:
                        lines.append(line)
            for (_, model, key), group in groups.items():
                self._count_hits(model, key, group)
            if log:
                self.log.write(lines)
        self.log.flush()

    def _count_hits(self, model: str, key: str | None, group: _HitGroup, similarity: float | None = None) -> None:
        """Count hits on one key in one time bucket: a group of exact hits (see :meth:`settle`),
        or one hit alone (``similarity``: a semantic hit's)."""
        namespace = self._namespace_label(key.rpartition(":")[0]) if key else ""
        saved_seconds = self.metrics.record_hits(model, namespace, group.elapsed, group.prompt,
                                                 group.completion, group.usd, similarity)
        count = len(group.elapsed)
        bucket = group.bucket
        bucket.requests += count
        bucket.hits += count
        if similarity is not None:
            bucket.semantic_hits += count
        bucket.saved_tokens += group.prompt + group.completion
        bucket.saved_usd += group.usd
        bucket.saved_seconds += saved_seconds
        if key is not None:
            self.hits.hit(key, model, group.last, count)

    def _count(self, record: RequestRecord) -> str | None:
        """Count one finished request; its log line (None when the log is off)."""
        elapsed = record.elapsed
        key = record.key
        now = record.ended
        bucket = self._bucket
        if not bucket.start <= now < bucket.start + self._bucket_seconds:
            bucket = self._bucket = self.series.current(now)
        outcome = record.cache
        if outcome == "hit":  # a semantic hit (settle groups the exact ones): a group of one
            group = _HitGroup(bucket)
            group.add(record)
            self._count_hits(record.model, key, group, record.similarity)
            return self._log_line(record, outcome, elapsed) if self.log.enabled else None
        bucket.requests += 1
        self.metrics.record(record, self._namespace_label(key.rpartition(":")[0]) if key else "", elapsed)
        if outcome == "miss":
            bucket.misses += 1
        elif outcome == "bypass":
            bucket.bypasses += 1
        return self._log_line(record, outcome, elapsed) if self.log.enabled else None

    def _namespace_label(self, namespace: str) -> str:
        """The metric label of a stored key's namespace, from a bounded set whatever clients send:
        a named namespace as it is, a tenant's partition as ``tenant/namespace`` (tenants come
        from the key store, which only the master key changes) with an unnamed namespace as
        ``tenant/_other``, any other namespace ``_other``."""
        label = self._namespace_labels.get(namespace)
        if label is None:
            label = namespace
            if namespace and namespace not in self.named_namespaces:
                tenant, slash, inner = namespace.partition("/")
                named = inner in self.named_namespaces or inner == DEFAULT_PARTITION
                label = f"{tenant}/{inner if named else OTHER_NAMESPACE}" if slash else OTHER_NAMESPACE
            if len(self._namespace_labels) < 4096:
                self._namespace_labels[namespace] = label
        return label

    def _log_line(self, record: RequestRecord, outcome: str | None, elapsed: float) -> str:
        saved_usd = round(record.saved_usd, 6) if record.saved_usd else None
        if self.json_logs or record.prompt is not None or record.route not in _PLAIN_ROUTES:
            line = format_line({
                "request_id": record.request_id,
                "route": record.route,
                "model": record.model or None,
                "caller": record.caller,
                "status": record.status,
                "cache": outcome or "none",
                "key": record.key,
                "similarity": record.similarity,
                "latency_ms": round(elapsed * 1000, 3),
                "saved_usd": saved_usd,
                "prompt": record.prompt,
            }, self.json_logs)
            return line if self.json_logs else self.log.prefix(record.ended) + line
        # The common text line, built in one piece (format_line's generic path costs ~8 µs a hit),
        # around the part that repeats from request to request (route, model, caller, status,
        # outcome, key), memoised: under load most lines are hits on a few hot keys. Request ids
        # and keys are safe by construction: hex, or validated characters.
        facts = (record.route, record.model, record.caller, record.status, outcome, record.key, record.similarity)
        middle = self._line_middles.get(facts)
        if middle is None:
            middle = _line_middle(*facts)
            if len(self._line_middles) >= 4096:  # bounded: keys and callers are many
                self._line_middles.clear()
            self._line_middles[facts] = middle
        micros = int(elapsed * 1_000_000)
        saved = f" saved_usd={saved_usd}" if saved_usd is not None else ""
        return (f"{self.log.prefix(record.ended)}request_id={record.request_id}{middle}"
                f" latency_ms={micros // 1000}.{micros % 1000:03d}{saved}")


def _line_middle(route: str, model: str, caller: str | None, status: int, outcome: str | None,
                 key: str | None, similarity: float | None) -> str:
    """The text line's fields between the request id and the latency."""
    model_part = f" model={logfmt_value(model)}" if model else ""
    caller_part = f" caller={logfmt_value(caller)}" if caller is not None else ""
    key_part = f" key={key}" if key is not None else ""
    similarity_part = f" similarity={similarity}" if similarity is not None else ""
    return (f" route={route}{model_part}{caller_part} status={status} cache={outcome or 'none'}"
            f"{key_part}{similarity_part}")


@dataclass(slots=True)
class _HitGroup:
    """Exact hits on one key within one settled batch (:meth:`Observer.settle`)."""

    bucket: Bucket
    elapsed: list[float] = field(default_factory=list)
    prompt: int = 0
    completion: int = 0
    usd: float = 0.0
    last: float = 0.0

    def add(self, record: RequestRecord) -> None:
        self.elapsed.append(record.elapsed)
        self.prompt += record.saved_prompt
        self.completion += record.saved_completion
        self.usd += record.saved_usd
        self.last = record.ended


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


def _prompt_text(body: dict[str, Any]) -> str | None:
    """The last chat message's text (or a string embedding input), cut to 200 characters."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        content = messages[-1].get("content")
        return content[:200] if isinstance(content, str) else None
    text = body.get("input")
    return text[:200] if isinstance(text, str) else None
