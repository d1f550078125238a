"""``POST /responses`` and ``POST /completions``: the provider's answer, cached verbatim.

The request goes to the deployment's own endpoint of the same name (``{api_base}/responses``,
``{api_base}/completions``) with the deployment's model name; the driver
(:class:`~reprise.cache.AsyncCache`) does the rest as it does for chat: hit, shared
in-flight answer, or lead. A plain answer is stored as its JSON bytes, a stream as its
events (:mod:`reprise.core.sse_record`), and both are sent back byte for byte. What is
cached, keyed and bypassed is decided in :mod:`reprise.core.verbatim`.

Only deployments that speak OpenAI's wire serve these routes: Azure OpenAI has the
Responses API only in preview API versions and other providers not at all, so any other
deployment answers 400 naming the model. ``mock_response`` deployments answer locally
(:mod:`reprise.server.mock_verbatim`).
"""

from __future__ import annotations

from typing import Any

import orjson

from reprise.cache import AsyncCache, Outcome
from reprise.core.controls import parse_controls
from reprise.core.keys import storage_key
from reprise.core.policy import BYPASS, CachePlan
from reprise.core.sse_record import CompletionsRecorder, ResponsesRecorder, SseRecorder
from reprise.core.verbatim import (
    JUDGES,
    RESPONSES,
    VerbatimFacts,
    completions_facts,
    entry_meta,
    forwarded,
    responses_facts,
)
from reprise.errors import RequestError, UpstreamError
from reprise.observability.observer import RequestRecord, unobserved
from reprise.server.auth import OPEN, Principal
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import JSON_TYPE, SSE_HEADERS, Receive, Scope, Send, header_text, send_bytes
from reprise.server.lead_forward import forward_lead
from reprise.server.mock_verbatim import MOCK, MockVerbatim
from reprise.server.upstream import Deployment, HttpUpstream
from reprise.server.wires import OpenAIWire
from reprise.stream_lead import StreamSource

Headers = list[tuple[bytes, bytes]]


def _upstream(gw: Gateway, deployment: Deployment) -> MockVerbatim | HttpUpstream:
    return MOCK if deployment.mock_response is not None else gw.http


async def handle_verbatim(gw: Gateway, kind: str, scope: Scope, receive: Receive, send: Send,
                          body: dict[str, Any], caller: Principal = OPEN,
                          record: RequestRecord | None = None) -> None:
    """Answer one ``/responses`` (``kind`` RESPONSES) or ``/completions`` request."""
    record = record or unobserved()
    facts = (responses_facts if kind == RESPONSES else completions_facts)(body)
    path = "/" + kind
    deployment = gw.pick(facts.model)
    if deployment.mock_response is None and not isinstance(deployment.wire, OpenAIWire):
        raise RequestError(f"model {facts.model!r}: its provider does not serve {path} through Reprise "
                           "(only OpenAI-compatible deployments do)", param="model", code="unsupported_api")
    controls = parse_controls(body.get("cache"), header_text(scope, b"cache-control"))
    enabled = gw.cache_responses if kind == RESPONSES else gw.cache_completions
    plan = gw.plan(controls, enabled, caller) if facts.bypass is None else BYPASS
    key = storage_key(facts.key_hash, plan.namespace) if plan.uses_cache else None
    driver = gw.cache or gw.forwarder
    request = forwarded(kind, body)
    request["model"] = deployment.upstream_model
    try:
        if facts.stream:
            await _stream(gw, driver, record, receive, send, facts, body, request, deployment, plan, key)
        else:
            await _answer(gw, driver, record, send, facts, body, request, deployment, plan, key)
    except UpstreamError as exc:
        exc.cache_status, exc.cache_key = ("miss" if key is not None and plan.read else "bypass"), key
        raise


async def _answer(gw: Gateway, cache: AsyncCache, record: RequestRecord, send: Send, facts: VerbatimFacts,
                  body: dict[str, Any], request: dict[str, Any], deployment: Deployment, plan: CachePlan,
                  key: str | None) -> None:
    """A plain request: stored as the provider's JSON bytes, only when the answer is final."""

    async def produce() -> Outcome:
        outcome = await _upstream(gw, deployment).post(deployment, "/" + facts.kind, request)
        if not outcome.ok:
            return outcome
        try:
            parsed = orjson.loads(outcome.body)
        except orjson.JSONDecodeError:
            parsed = None
        verdict = JUDGES[facts.kind](parsed)
        if verdict is None:
            raise UpstreamError(f"model {deployment.model_name!r}: the provider's answer to /{facts.kind} "
                                "is not one of its objects or reports a failure")
        return Outcome(outcome.status, outcome.body, entry_meta(facts.kind, body, parsed), outcome.headers,
                       storable=verdict)

    answer = await cache.get_or_produce(key or "", plan, produce)
    record.report(answer.cache_status, key, answer.entry)
    headers = [JSON_TYPE, *cache_headers(answer.cache_status, key, answer.entry, cache.clock()),
               *answer.upstream_headers]
    await send_bytes(send, answer.status, answer.body, headers)


async def _stream(gw: Gateway, cache: AsyncCache, record: RequestRecord, receive: Receive, send: Send,
                  facts: VerbatimFacts, body: dict[str, Any], request: dict[str, Any], deployment: Deployment,
                  plan: CachePlan, key: str | None) -> None:
    """A streamed request: its events stored as they pass, replayed byte for byte."""
    def source() -> StreamSource:  # made only by a request that leads (a hit needs none)
        recorder: SseRecorder = ResponsesRecorder() if facts.kind == RESPONSES else CompletionsRecorder()
        return StreamSource(
            open=lambda: _upstream(gw, deployment).open_stream(deployment, "/" + facts.kind, request),
            assembler=recorder,
            describe=lambda completion: entry_meta(facts.kind, body, completion),
        )

    answer = await cache.stream(key, plan, source)
    headers = cache_headers(answer.cache_status, key, answer.entry, cache.clock())
    record.report(answer.cache_status, key, answer.entry)
    if answer.entry is not None:
        await send_bytes(send, 200, answer.entry.body, [*SSE_HEADERS, *headers])
    elif answer.shared is not None:
        await _send_whole(send, answer.shared, headers)
    else:
        assert answer.lead is not None
        event = b"event: error\n" if facts.kind == RESPONSES else b""
        await forward_lead(send, receive, answer.lead, headers,
                           lambda instead: _send_whole(send, instead, headers), event)


async def _send_whole(send: Send, outcome: Outcome, headers: Headers) -> None:
    """A whole answer instead of a live stream: the recorded events, or the provider's error."""
    if outcome.status >= 300:
        await send_bytes(send, outcome.status, outcome.body, [JSON_TYPE, *headers, *outcome.headers])
    else:
        await send_bytes(send, outcome.status, outcome.body, [*SSE_HEADERS, *headers, *outcome.headers])
