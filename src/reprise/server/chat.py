"""``POST /chat/completions``: translate between HTTP and the driver, for plain and streamed answers.

The driver (:class:`~reprise.cache.AsyncCache`) decides everything: hit, shared
outcome, or lead. This module says how to produce an answer (the provider call), and
sends what the driver gives back: a stored answer as JSON or replayed as SSE, a shared
outcome the same way, or the lead's events as they arrive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from reprise.cache import AsyncCache, Outcome
from reprise.core.body import parse_json_object
from reprise.core.chat_answer import judge_chat_completion
from reprise.core.chat_request import ChatFacts, ChatFactsMemo, controls_of
from reprise.core.keys import storage_key
from reprise.core.policy import CachePlan
from reprise.core.streaming import StreamAssembler
from reprise.errors import UpstreamError
from reprise.observability.observer import RequestRecord, unobserved
from reprise.server import semantic_chat
from reprise.server.auth import OPEN, Principal
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import (
    JSON_TYPE,
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    header_text,
    send_bytes,
)
from reprise.server.lead_forward import forward_lead
from reprise.server.upstream import Deployment, upstream_body
from reprise.stream_lead import StreamSource

PATH = "/chat/completions"


def entry_meta(body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """What the admin views show about an entry: model, a prompt preview, token usage."""
    messages = body.get("messages") or []
    last = messages[-1].get("content") if messages else ""
    preview = last if isinstance(last, str) else orjson.dumps(last).decode()
    return {"kind": "chat", "model": body.get("model"), "preview": preview[:120], "usage": answer.get("usage")}


class ChatRequest:
    """A chat request: its bytes, their facts, and the body, parsed again only if a miss needs it.

    ``reports_usage``: the inbound API's stream reports the usage whatever the client said
    (Anthropic's ``message_delta``). The usage chunk is then asked for as the gateway's own
    choice (so a provider that refuses ``stream_options`` is asked again without it), passed
    on live and replayed from a stored answer; the body itself has no ``stream_options``.
    """

    __slots__ = ("raw", "facts", "_body", "_memo", "reports_usage")

    def __init__(self, raw: bytes, facts: ChatFacts, body: dict[str, Any] | None = None,
                 memo: ChatFactsMemo | None = None, reports_usage: bool = False) -> None:
        self.raw, self.facts, self._body, self._memo = raw, facts, body, memo
        self.reports_usage = reports_usage

    def remember(self) -> None:
        """Keep the facts for the next identical body: called once the model resolved (a body
        naming no model would otherwise fill the memo with answers that are only 404s)."""
        if self._memo is not None:
            self._memo.put(self.raw, self.facts)

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:  # facts came from the memo: the bytes were parsed (and valid) before
            self._body = parse_json_object(self.raw)
        return self._body


async def handle_chat(gw: Gateway, scope: Scope, receive: Receive, send: Send, request: ChatRequest,
                      caller: Principal = OPEN, record: RequestRecord | None = None) -> None:
    record = record or unobserved()
    facts = request.facts
    deployment = gw.pick(facts.model)
    request.remember()
    controls = controls_of(facts, header_text(scope, b"cache-control"))
    plan = gw.plan(controls, gw.cache_chat, caller)  # BYPASS when the gateway has no cache
    key = storage_key(facts.key_hash, plan.namespace) if plan.uses_cache else None
    driver = gw.cache or gw.forwarder
    try:  # upstream_failure_reported_as, inline: its context manager cost ~1.5 µs a hit
        if facts.stream:
            await _stream(gw, driver, record, receive, send, request, deployment, plan, key, caller)
        else:
            await _answer(gw, driver, record, send, request, deployment, plan, key, caller)
    except UpstreamError as exc:
        exc.cache_status, exc.cache_key = ("miss" if key is not None and plan.read else "bypass"), key
        raise


async def _answer(gw: Gateway, cache: AsyncCache, record: RequestRecord, send: Send, request: ChatRequest,
                  deployment: Deployment, plan: CachePlan, key: str | None, caller: Principal) -> None:
    """A non-streamed request: from the cache, a shared in-flight call, or the provider."""

    async def produce() -> Outcome:
        body = request.body
        outcome = await gw.upstream(deployment).post(deployment, PATH, upstream_body(body, deployment))
        if not outcome.ok:
            return outcome
        completion, storable = _completion(deployment, outcome.body)
        return Outcome(outcome.status, outcome.body, entry_meta(body, completion), outcome.headers,
                       storable=storable and outcome.storable)

    semantic = semantic_chat.slot(gw, request.body, plan, caller.tenant) if key is not None and gw.semantic else None
    answer = await cache.get_or_produce(key or "", plan, produce, semantic)
    record.report(answer.cache_status, key, answer.entry, semantic.similarity if semantic is not None else None)
    headers = [JSON_TYPE, *cache_headers(answer.cache_status, key, answer.entry, cache.clock()),
               *answer.upstream_headers]
    if semantic is not None:
        headers += semantic.headers()
    await send_bytes(send, answer.status, answer.body, headers)


def _completion(deployment: Deployment, raw: bytes) -> tuple[dict[str, Any], bool]:
    """The provider's 2xx body as a chat completion, and whether it may be stored (every choice
    finished); a body that is none, or carries ``error``, is the provider's failure (502)."""
    try:
        completion = orjson.loads(raw)
    except orjson.JSONDecodeError:
        completion = None
    verdict = judge_chat_completion(completion)
    if verdict is None:
        error = completion.get("error") if isinstance(completion, dict) else None
        if error is not None:
            said = error.get("message") if isinstance(error, dict) else error
            raise UpstreamError(f"model {deployment.model_name!r}: the provider's answer carries an error: "
                                f"{str(said)[:200]}")
        raise UpstreamError(f"model {deployment.model_name!r}: the provider's answer is not a chat completion")
    assert isinstance(completion, dict)
    return completion, verdict


async def _stream(gw: Gateway, cache: AsyncCache, record: RequestRecord, receive: Receive, send: Send,
                  request: ChatRequest, deployment: Deployment, plan: CachePlan, key: str | None,
                  caller: Principal) -> None:
    usage = request.facts.asks_usage or request.reports_usage
    if request.facts.refuses_usage and plan.store:
        # The client's explicit ``include_usage: false`` is forwarded as it is, so this stream has no
        # usage: stored, it would make plain hits lack the provider's usage. Read, never store.
        plan = replace(plan, store=False)
    def source() -> StreamSource:  # made only by a request that leads (a hit needs none)
        return StreamSource(
            open=lambda: gw.upstream(deployment).open_chat_stream(
                deployment, PATH, request.body, record_usage=request.reports_usage or (key is not None and plan.store)
            ),
            assembler=StreamAssembler(drop_usage_chunk=not usage),
            describe=lambda completion: entry_meta(request.body, completion),
            storable=not request.facts.refuses_usage,  # nor by a request that waited for it
        )

    semantic = semantic_chat.slot(gw, request.body, plan, caller.tenant) if key is not None and gw.semantic else None
    answer = await cache.stream(key, plan, source, semantic)
    headers = cache_headers(answer.cache_status, key, answer.entry, cache.clock())
    record.report(answer.cache_status, key, answer.entry, semantic.similarity if semantic is not None else None)
    if answer.entry is not None:
        if semantic is not None:
            headers += semantic.headers()
        await _send_replay(gw, send, key, usage, 200, answer.entry.body, headers, answer.entry.recording)
    elif answer.shared is not None:
        shared = answer.shared
        await _send_replay(gw, send, key, usage, shared.status, shared.body, headers, shared.recording)
    else:
        assert answer.lead is not None

        async def replay_instead(instead: Outcome) -> None:  # the provider's error, or a stored answer
            await _send_replay(gw, send, key, usage, instead.status, instead.body, [*headers, *instead.headers],
                               instead.recording)

        await forward_lead(send, receive, answer.lead, headers, replay_instead)


async def _send_replay(gw: Gateway, send: Send, key: str | None, usage: bool, status: int, answer: bytes | memoryview,
                       headers: list[tuple[bytes, bytes]], recording: bytes | memoryview = b"") -> None:
    """Send a stored (or shared) answer in the client's streaming format: the provider's
    events when they were kept beside it (``recording``), else the answer rendered as chunks."""
    if status >= 300:
        await send_bytes(send, status, answer, [JSON_TYPE, *headers])
        return
    sse = gw.replays.render(key, answer, usage, recording)
    await send_bytes(send, 200, sse, [*SSE_HEADERS, *headers])
