"""``POST /chat/completions``: exact-cache hits, coalesced misses, streamed and plain answers.

A plain answer goes through :meth:`AsyncCache.get_or_produce`. A streamed request
reads the cache itself; on a miss it either follows an identical in-flight request
(and replays its answer as SSE) or leads: it forwards the provider's events as they
arrive while reassembling them, and stores the answer only if the stream completed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from reprise.cache import AsyncCache, Outcome
from reprise.core.controls import parse_controls
from reprise.core.keys import chat_key_hash, storage_key
from reprise.core.policy import CachePlan
from reprise.core.request import require_model, validate_chat
from reprise.core.streaming import StreamAssembler, render_sse
from reprise.errors import UpstreamError
from reprise.observability.observer import note_hit
from reprise.server import semantic_chat
from reprise.server.auth import OPEN, Principal
from reprise.server.errors import error_body, upstream_failure_reported_as
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import (
    JSON_TYPE,
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    header,
    send_bytes,
    watch_disconnect,
)
from reprise.server.upstream import Deployment, upstream_body

PATH = "/chat/completions"


def entry_meta(body: dict[str, Any], answer: bytes | dict[str, Any]) -> dict[str, Any]:
    """What the admin views show about an entry: model, a prompt preview, token usage."""
    messages = body.get("messages") or []
    last = messages[-1].get("content") if messages else ""
    preview = last if isinstance(last, str) else orjson.dumps(last).decode()
    try:
        usage = (orjson.loads(answer) if isinstance(answer, bytes) else answer).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        usage = None
    return {"kind": "chat", "model": body.get("model"), "preview": preview[:120], "usage": usage}


async def handle_chat(gw: Gateway, scope: Scope, receive: Receive, send: Send, body: dict[str, Any],
                      caller: Principal = OPEN) -> None:
    model = require_model(body)
    validate_chat(body)
    deployment = gw.pick(model)
    controls = parse_controls(body.get("cache"), _header_str(scope, b"cache-control"))
    plan = gw.plan(controls, gw.cache_chat, caller)
    stream = body.get("stream") is True
    key = storage_key(chat_key_hash(body), plan.namespace) if plan.uses_cache else None
    with upstream_failure_reported_as("miss" if key is not None and plan.read else "bypass", key):
        if stream:
            await _stream(gw, scope, receive, send, body, deployment, plan, key)
        else:
            await _answer(gw, scope, send, body, deployment, plan, key)


async def _answer(gw: Gateway, scope: Scope, send: Send, body: dict[str, Any], deployment: Deployment,
                  plan: CachePlan, key: str | None) -> None:
    """A non-streamed request: from the cache, a shared in-flight call, or the provider."""

    async def produce() -> Outcome:
        outcome: Outcome = await gw.upstream(deployment).post(
            deployment, PATH, upstream_body(body, deployment)
        )
        if outcome.ok:
            return Outcome(outcome.status, outcome.body, entry_meta(body, outcome.body))
        return outcome

    assert gw.cache is not None or key is None
    if gw.cache is None or key is None:
        outcome = await produce()
        await send_bytes(send, outcome.status, outcome.body, [JSON_TYPE, *cache_headers("bypass", None)])
        return
    semantic = semantic_chat.slot(gw, body, plan)
    answer = await gw.cache.get_or_produce(key, plan, produce, semantic.lookup if semantic else None)
    if answer.entry is not None:
        note_hit(scope, answer.entry, semantic.similarity if semantic is not None else None)
    headers = [JSON_TYPE, *cache_headers(answer.cache_status, key, answer.entry, gw.cache.clock())]
    if semantic is not None:
        headers += semantic.headers()
    await send_bytes(send, answer.status, answer.body, headers)
    if semantic is not None:
        await semantic.remember(key, answer.status, answer.cache_status)


def _header_str(scope: Scope, name: bytes) -> str | None:
    raw = header(scope, name)
    return raw.decode("latin-1") if raw is not None else None


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def _send_replay(send: Send, body: dict[str, Any], status: int, answer: bytes,
                       headers: list[tuple[bytes, bytes]]) -> None:
    """Send a stored (or shared) non-streamed answer in the client's streaming format."""
    if status >= 300:
        await send_bytes(send, status, answer, [JSON_TYPE, *headers])
        return
    sse = render_sse(orjson.loads(answer), _include_usage(body))
    await send_bytes(send, 200, sse, [*SSE_HEADERS, *headers])


async def _stream(gw: Gateway, scope: Scope, receive: Receive, send: Send, body: dict[str, Any],
                  deployment: Deployment, plan: CachePlan, key: str | None) -> None:
    cache = gw.cache
    if cache is None or key is None:
        await _lead_stream(gw, receive, send, body, deployment, plan, None, "bypass")
        return
    semantic = semantic_chat.slot(gw, body, plan)
    if not plan.read:
        cache.stats.bypasses += 1
        outcome = await _lead_stream(gw, receive, send, body, deployment, plan, key, "bypass")
        if semantic is not None and outcome is not None:
            await semantic.remember(key, outcome.status, "bypass")
        return
    if await _replay_stored(cache, scope, send, body, key, plan, semantic):
        return
    cache.stats.misses += 1
    flight = cache.flights.current(key)
    if flight is not None:
        shared = await cache.flights.follow(flight)
        if shared is not None:
            cache.stats.coalesced += 1
            await _send_replay(send, body, shared.status, shared.body, cache_headers("miss", key))
            return
    with cache.flights.lead(key) as leading:
        # Across gateway instances: another one may be producing this answer (Redis lock).
        async with cache.peer_flight(key, plan) as stored:
            if stored is not None:
                cache.stats.coalesced += 1
                leading.resolve(Outcome(200, stored.body))
                await _send_replay(send, body, 200, stored.body, cache_headers("miss", key))
                return
            outcome = await _lead_stream(gw, receive, send, body, deployment, plan, key, "miss")
        leading.resolve(outcome)
    if semantic is not None and outcome is not None:
        await semantic.remember(key, outcome.status, "miss")


async def _replay_stored(cache: AsyncCache, scope: Scope, send: Send, body: dict[str, Any], key: str,
                         plan: CachePlan, semantic: semantic_chat.SemanticSlot | None) -> bool:
    """Answer a streamed request from an exact, semantic or just-stored entry; False on a miss."""
    mark = cache.flights.mark()
    entry = await cache.read(key, plan.max_age)
    matched = entry is None and semantic is not None and (entry := await semantic.lookup()) is not None
    if entry is None:
        entry = await cache.stored_meanwhile(key, plan, mark)
    if entry is None:
        return False
    cache.stats.hits += 1
    headers = cache_headers("hit", key, entry, cache.clock())
    if matched and semantic is not None:
        note_hit(scope, entry, semantic.similarity)
        headers += semantic.headers()
    else:
        note_hit(scope, entry)
    await _send_replay(send, body, 200, entry.body, headers)
    return True


async def _lead_stream(gw: Gateway, receive: Receive, send: Send, body: dict[str, Any],
                       deployment: Deployment, plan: CachePlan, key: str | None,
                       status_word: str) -> Outcome | None:
    """Forward the provider's stream; return the outcome to share, or None if it did not complete."""
    request = upstream_body(body, deployment)
    request["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    assembler = StreamAssembler(drop_usage_chunk=not _include_usage(body))
    headers = cache_headers(status_word, key)
    if gw.cache is not None and key is not None:
        gw.cache.stats.upstream_calls += 1
    async with gw.upstream(deployment).open_stream(deployment, PATH, request) as reply:
        if reply.status >= 300:
            await send_bytes(send, reply.status, reply.error_body, [JSON_TYPE, *headers])
            return Outcome(reply.status, reply.error_body)
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})
        watcher = watch_disconnect(receive)
        tail = b""  # from [DONE] on: sent once the answer is stored
        try:
            async for piece in reply.chunks:
                if watcher.done():
                    return None  # client gone: abort, store nothing
                events = assembler.feed(piece)
                if events and assembler.done:
                    tail += b"".join(events)
                elif events:
                    await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
            await asyncio.sleep(0)  # let the watcher see a disconnect that raced the last event
            aborted = watcher.done()
        except UpstreamError as exc:
            failure = b"data: " + error_body(str(exc), "upstream_error", None, "stream_broken") + b"\n\n"
            await send({"type": "http.response.body", "body": tail + failure, "more_body": False})
            return None
        finally:
            watcher.cancel()
        # Store before the stream ends, as a plain answer is stored before it is sent: a client
        # that repeats the request as soon as it has read [DONE] gets a hit, also on a slow store.
        outcome = None if aborted else await _store_stream(gw, body, plan, key, assembler)
        # after this last send the ASGI server reports the finished cycle as a disconnect
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    return outcome


async def _store_stream(gw: Gateway, body: dict[str, Any], plan: CachePlan, key: str | None,
                        assembler: StreamAssembler) -> Outcome | None:
    """The completed stream as one answer, stored when the plan says so; None if it did not complete."""
    if not assembler.complete:
        return None  # cut or malformed upstream: never stored
    completion = assembler.completion()
    answer = orjson.dumps(completion)
    if plan.store and gw.cache is not None and key is not None:
        entry = gw.cache.make_entry(answer, plan.ttl, entry_meta(body, completion))
        await gw.cache.write(key, entry)
    return Outcome(200, answer)

