"""The ASGI application: dispatch through the route table, body parsing and the error edge.

Plain ASGI (no framework) so a cache hit pays only for what it needs. Every error
reaching this edge becomes OpenAI's error JSON with a 4xx/5xx status; nothing
escapes to the ASGI server as an exception.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from reprise import __version__
from reprise.backends.embedded_vector import LocalVectorStore
from reprise.config import GatewayConfig, load_config
from reprise.config.serving import check_serving
from reprise.core.body import refuse_duplicate_members
from reprise.core.chat_request import ChatFactsMemo, chat_facts
from reprise.core.verbatim import COMPLETIONS, RESPONSES
from reprise.errors import ConfigError, NotFoundError, TooManyRequests, UpstreamError
from reprise.observability.gateway_metrics import add_index_metrics, add_judge_metrics, add_qdrant_metrics
from reprise.observability.metrics import Collected
from reprise.observability.observer import Observer, RequestRecord
from reprise.observability.workers import WorkerMetrics
from reprise.semantic.lazy_store import LazyVectorStore
from reprise.server.body_parser import BodyParser
from reprise.server.cache_admin import CacheAdmin
from reprise.server.chat import ChatRequest, handle_chat
from reprise.server.collector import settle_for_serving
from reprise.server.embeddings import handle_embeddings
from reprise.server.errors import error_body, render_error
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import JSON_TYPE, ClientGone, Receive, Scope, Send, read_body, send_bytes
from reprise.server.keys_admin import KeysAdmin
from reprise.server.messages import anthropic_answers, handle_count_tokens, handle_messages
from reprise.server.observe import observe
from reprise.server.openapi import openapi_json
from reprise.server.protocol import REFUSED
from reprise.server.routes import AZURE_DEPLOYMENTS, Access, Call, admit, build_routes, without_body
from reprise.server.sdk_upstream import sdk_keys
from reprise.server.ui_assets import UiAssets
from reprise.server.verbatim import handle_verbatim

log = logging.getLogger("reprise.server")

CONFIG_ENV = "REPRISE_CONFIG"


class RepriseApp:
    """ASGI callable. Handles ``lifespan`` to open and close its gateway.

    Requests go through one route table (:mod:`reprise.server.routes`); this class is
    the handlers the table does not find elsewhere: the API, health, docs and dashboard.
    """

    def __init__(self, config: GatewayConfig) -> None:
        check_serving(config)  # closed by default: the same check as `reprise config check`
        self.config = config
        self.gateway = Gateway.from_config(config)
        self.started = time.time()
        self.observer = Observer(config, self.gateway.cache)  # metrics, request log (docs/operations.md)
        self.observer.metrics.registry.add(Collected(
            "reprise_connections_refused_total", "Requests refused by the HTTP protocol's bounds, by error code.",
            "counter", ("code",), lambda: [((code,), float(n)) for code, n in sorted(REFUSED.items())]))
        self.observer.metrics.registry.add(Collected(
            "reprise_replay_memo_bytes", "Memory held by the SSE forms of stored answers made for streamed hits "
            "(bounded by a local cache's max_bytes, else 64 MiB).",
            "gauge", (), lambda: [((), float(self.gateway.replays.size_bytes))]))
        judge = self.gateway.semantic.judge if self.gateway.semantic is not None else None
        if judge is not None:
            add_judge_metrics(self.observer.metrics.registry, judge.stats)
        store = self.gateway.semantic.store if self.gateway.semantic is not None else None
        if isinstance(store, LocalVectorStore | LazyVectorStore):
            add_index_metrics(self.observer.metrics.registry, lambda: _index_counters(store))
        if config.litellm_settings.cache_params is not None and \
                config.litellm_settings.cache_params.type == "qdrant-semantic":  # qdrant_client is optional
            add_qdrant_metrics(self.observer.metrics.registry, lambda: _sweep_stats(store))
        self.worker_metrics = WorkerMetrics.from_environ(self.observer)  # machine-wide with --workers N
        self.ui = UiAssets()
        self.bodies = BodyParser()
        self._in_flight: dict[str, int] = {}  # requests in progress by key id (tenants' keys only)
        self.chat_facts = ChatFactsMemo()  # a repeated body is not parsed, checked and hashed again
        metrics = Access.MASTER if config.general_settings.metrics_require_auth else Access.PUBLIC
        self.routes = build_routes(
            self,
            CacheAdmin(self.gateway, self.observer, self.worker_metrics, self._admin_body),
            KeysAdmin(self.gateway, self._admin_body),
            metrics=metrics,
            anthropic=anthropic_answers,
        )
        passed = set(sdk_keys(config))  # provider keys of entries the LiteLLM SDK calls
        ignored = [key for key in config.ignored_keys if key not in passed]
        if ignored:
            log.warning("config keys not used by Reprise (ignored): %s", ", ".join(ignored))
        if config.litellm_settings.cache_type_note:
            log.warning("%s", config.litellm_settings.cache_type_note)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] in self.routes.observed_paths:  # inline, not a coroutine of its own: the hot path
                record, observed_send = observe(self.observer, scope, send)
                try:
                    await self._http(scope, receive, observed_send, record)
                finally:
                    self.observer.end(record)
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.open()
                except ConfigError as exc:  # a setting that can never work: say which, and stop
                    log.error("cannot start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.worker_metrics.start()
                settle_for_serving()  # `reprise serve` only: the loaded gateway is never garbage
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.observer.settle()
                await self.worker_metrics.aclose()
                self.bodies.close()
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord | None = None) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "HEAD":
            send = without_body(send)
        try:
            route = self.routes.resolve(method, path)
            if route.reshape is not None:  # another API's routes answer in its shape, errors included
                send = route.reshape(send)
            caller = admit(self.gateway, route.access, scope)
            if caller.max_parallel is None:
                await route.handler(Call(scope, receive, send, caller, record))
            else:
                await self._within_key_limit(route.handler, Call(scope, receive, send, caller, record))
        except ClientGone:
            return
        except Exception as exc:  # the edge: every failure becomes OpenAI error JSON
            status, payload, headers = render_error(exc)
            if record is not None and isinstance(exc, UpstreamError) and exc.cache_status is not None:
                record.report(exc.cache_status, exc.cache_key)
            if status >= 500:
                log.error("request %s %s failed: %s", method, path, exc, exc_info=status == 500)
            await self._send_error(send, status, payload, [*headers, *_cache_report(exc)])

    async def _within_key_limit(self, handler: Callable[[Call], Awaitable[None]], call: Call) -> None:
        """Run ``handler`` if the caller's key has a request slot free; 429 (before the body is read) if not.

        Bounds what one key holds: without it a key could keep every connection of the
        process busy with slow bodies or streams (README, "Hostile load").
        """
        key, limit, in_flight = call.caller.key_id, call.caller.max_parallel, self._in_flight
        assert limit is not None
        held = in_flight.get(key, 0)
        if held >= limit:
            raise TooManyRequests(f"this key already has {limit} requests in progress; retry when one ends",
                                  code="too_many_parallel_requests")
        in_flight[key] = held + 1
        try:
            await handler(call)
        finally:
            left = in_flight[key] - 1
            if left:
                in_flight[key] = left
            else:
                del in_flight[key]

    # -- handlers (the route table names them) ----------------------------------------

    async def chat(self, call: Call) -> None:
        scope, receive, send, caller, record = call.scope, call.receive, call.send, call.caller, call.record
        raw = await read_body(scope, receive, self.gateway.max_body_bytes)
        facts = self.chat_facts.get(raw)
        if facts is None:
            body = await self.bodies.parse(raw)
            if record is not None:  # noted before validation: a 400 is logged with its model
                self.observer.note_request(record, body, caller.key_id)
            facts = chat_facts(body)
            request = ChatRequest(raw, facts, body, self.chat_facts)  # remembered once its model resolves
        else:
            request = ChatRequest(raw, facts)
            if record is not None:
                self.observer.note_model(record, facts.model, caller.key_id, request)
        await handle_chat(self.gateway, scope, receive, send, request, caller, record)

    async def embeddings(self, call: Call) -> None:
        scope, receive, send, caller, record = call.scope, call.receive, call.send, call.caller, call.record
        body = await self._json_body(scope, receive)
        if record is not None:
            self.observer.note_request(record, body, caller.key_id)
        await handle_embeddings(self.gateway, scope, send, body, caller, record)

    async def responses(self, call: Call) -> None:
        """``POST /responses`` (OpenAI's Responses API), cached verbatim (:mod:`reprise.server.verbatim`)."""
        await self._verbatim(RESPONSES, call)

    async def completions(self, call: Call) -> None:
        """``POST /completions`` (legacy text completions), cached verbatim."""
        await self._verbatim(COMPLETIONS, call)

    async def _verbatim(self, kind: str, call: Call) -> None:
        scope, receive, send, caller, record = call.scope, call.receive, call.send, call.caller, call.record
        body = await self._json_body(scope, receive)
        if record is not None:
            self.observer.note_request(record, body, caller.key_id)
        await handle_verbatim(self.gateway, kind, scope, receive, send, body, caller, record)

    async def azure_deployment(self, call: Call) -> None:
        """Azure's route form: the deployment in the path names the model; ``api-version`` is
        accepted and ignored (the answer is OpenAI's, which every Azure version reads)."""
        scope, receive, send, caller = call.scope, call.receive, call.send, call.caller
        name, _, operation = unquote(scope["path"][len(AZURE_DEPLOYMENTS):]).partition("/")
        if not name or operation not in ("chat/completions", "embeddings"):
            raise NotFoundError(f"no route POST {scope['path']}", code="not_found")
        body = await self._json_body(scope, receive)
        body["model"] = name
        if operation == "embeddings":
            await handle_embeddings(self.gateway, scope, send, body, caller)
        else:
            request = ChatRequest(orjson.dumps(body), chat_facts(body), body)
            await handle_chat(self.gateway, scope, receive, send, request, caller)

    async def messages(self, call: Call) -> None:
        """Anthropic's Messages API, answered by the chat path (:mod:`reprise.server.messages`)."""
        record = call.record
        note = None if record is None else (
            lambda body: self.observer.note_request(record, body, call.caller.key_id))
        await handle_messages(self.gateway, call, self._json_body, note)

    async def count_tokens(self, call: Call) -> None:
        await handle_count_tokens(self.gateway, call, self._json_body)

    async def models(self, call: Call) -> None:
        data = [
            {"id": name, "object": "model", "created": int(self.started), "owned_by": "reprise"}
            for name in (self.gateway.routes.listed if self.gateway.routes else self.gateway.deployments)
        ]
        await send_bytes(call.send, 200, orjson.dumps({"object": "list", "data": data}), [JSON_TYPE])

    async def liveness(self, call: Call) -> None:
        await send_bytes(call.send, 200, b'{"status":"alive"}', [JSON_TYPE])

    async def readiness(self, call: Call) -> None:
        cache = self.gateway.cache
        body = {
            "status": "healthy",
            "cache": cache.backend.name if cache else None,
            "cache_backend_failing": bool(cache and cache.stats.backend_errors and cache.failing),
        }
        await send_bytes(call.send, 200, orjson.dumps(body), [JSON_TYPE])

    async def openapi(self, call: Call) -> None:
        """``GET /openapi.json``, public: it describes the API, nothing of the deployment."""
        await send_bytes(call.send, 200, openapi_json(__version__), [JSON_TYPE])

    async def dashboard(self, call: Call) -> None:
        """``/ui`` and its files (public: its numbers come from the master-key admin API)."""
        await self.ui.serve(call.send, "GET", call.scope["path"])  # the table admits GET (and HEAD as GET)

    @staticmethod
    async def _send_error(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        try:
            await send_bytes(send, status, body, [JSON_TYPE, *(extra or ())])
        except Exception:  # response already started (mid-stream): nothing more to say
            log.debug("could not send error response", exc_info=True)

    async def _json_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        return await self.bodies.parse(await read_body(scope, receive, self.gateway.max_body_bytes))

    async def _admin_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        """An admin body, whose members must each appear once (:func:`refuse_duplicate_members`)."""
        raw = await read_body(scope, receive, self.gateway.max_body_bytes)
        body = await self.bodies.parse(raw)
        refuse_duplicate_members(raw)
        return body


def create_app(config: GatewayConfig | None = None) -> RepriseApp:
    """ASGI factory; without an argument reads the config path from ``$REPRISE_CONFIG``."""
    if config is None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise RuntimeError(f"set {CONFIG_ENV} to the config.yaml path")
        config = load_config(path)
    return RepriseApp(config)


AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
__all__ = ["RepriseApp", "create_app", "error_body"]


def _cache_report(exc: Exception) -> list[tuple[bytes, bytes]]:
    """A provider failure still says what the cache did (``x-reprise-cache`` is on every answer)."""
    if isinstance(exc, UpstreamError) and exc.cache_status is not None:
        return cache_headers(exc.cache_status, exc.cache_key)
    return []


def _real_store(store: object) -> object:
    """The store that holds the vectors: the one a :class:`LazyVectorStore` made (None before), else ``store``."""
    return store.inner if isinstance(store, LazyVectorStore) else store


def _index_counters(store: object) -> tuple[int, ...] | None:
    """The embedded index's counts behind ``store``, else None."""
    inner = _real_store(store)
    return inner.counters() if isinstance(inner, LocalVectorStore) else None


def _sweep_stats(store: object) -> object | None:
    """The expiry sweeps' counters (``SweepStats``) of the Qdrant store behind ``store``, else None
    (read by name: :mod:`reprise.backends.qdrant` needs the optional qdrant_client)."""
    return getattr(getattr(_real_store(store), "connection", None), "sweep_stats", None)
