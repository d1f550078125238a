"""The ASGI application: routing, auth, body parsing and the error edge.

Plain ASGI (no framework) so a cache hit pays only for what it needs. Every error
reaching this edge becomes OpenAI's error JSON with a 4xx/5xx status; nothing
escapes to the ASGI server as an exception.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from reprise import __version__
from reprise.config import GatewayConfig, load_config
from reprise.errors import ConfigError, NotFoundError, RequestError, UpstreamError
from reprise.observability.observer import Observer, RequestRecord
from reprise.server.cache_admin import handle_admin, is_admin_path
from reprise.server.chat import handle_chat
from reprise.server.embeddings import handle_embeddings
from reprise.server.errors import error_body, render_error
from reprise.server.gateway import Gateway
from reprise.server.headers import cache_headers
from reprise.server.http import (
    JSON_TYPE,
    ClientGone,
    Receive,
    Scope,
    Send,
    header,
    read_body,
    send_bytes,
)
from reprise.server.keys_admin import KEY_PATHS, handle_keys
from reprise.server.observe import observe
from reprise.server.openapi import openapi_json
from reprise.server.ui_assets import UiAssets

log = logging.getLogger("reprise.server")

CONFIG_ENV = "REPRISE_CONFIG"

_CHAT_PATHS = frozenset({"/chat/completions", "/v1/chat/completions"})
_EMBEDDING_PATHS = frozenset({"/embeddings", "/v1/embeddings"})
_MODEL_PATHS = frozenset({"/models", "/v1/models"})
_LIVE_PATHS = frozenset({"/health/liveliness", "/health/liveness", "/livez"})
_READY_PATHS = frozenset({"/health/readiness", "/readyz", "/health"})


class RepriseApp:
    """ASGI callable. Handles ``lifespan`` to open and close its gateway."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.gateway = Gateway.from_config(config)
        self.started = time.time()
        self.observer = Observer(config, self.gateway.cache)  # metrics, request log (docs/operations.md)
        self.ui = UiAssets()
        if config.ignored_keys:
            log.warning("config keys not used by Reprise (ignored): %s", ", ".join(config.ignored_keys))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] in _CHAT_PATHS or scope["path"] in _EMBEDDING_PATHS:
                await self._observed(scope, receive, send)
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
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.observer.settle()
                await self.gateway.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _observed(self, scope: Scope, receive: Receive, send: Send) -> None:
        record, observed_send = observe(self.observer, scope, send)
        try:
            await self._http(scope, receive, observed_send, record)
        finally:
            self.observer.end(record)

    async def _http(self, scope: Scope, receive: Receive, send: Send, record: RequestRecord | None = None) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if method == "POST" and (path in _CHAT_PATHS or path in _EMBEDDING_PATHS):
                caller = self.gateway.check_auth(header(scope, b"authorization"))
                body = await self._json_body(scope, receive)
                if record is not None:
                    self.observer.note_request(record, body, caller.key_id)
                if path in _CHAT_PATHS:
                    await handle_chat(self.gateway, scope, receive, send, body, caller, record)
                else:
                    await handle_embeddings(self.gateway, scope, send, body, caller, record)
            elif path in KEY_PATHS:
                self.gateway.require_master(header(scope, b"authorization"))
                body = await self._json_body(scope, receive) if method == "POST" else {}
                await handle_keys(self.gateway, method, path, send, body)
            elif method == "GET" and path in _MODEL_PATHS:
                self.gateway.check_auth(header(scope, b"authorization"))
                await self._models(send)
            elif method == "GET" and path in _LIVE_PATHS:
                await send_bytes(send, 200, b'{"status":"alive"}', [JSON_TYPE])
            elif method == "GET" and path in _READY_PATHS:
                await self._ready(send)
            else:
                await self._operator(scope, receive, send)
        except ClientGone:
            return
        except Exception as exc:  # the edge: every failure becomes OpenAI error JSON
            status, payload = render_error(exc)
            if record is not None and isinstance(exc, UpstreamError) and exc.cache_status is not None:
                record.report(exc.cache_status, exc.cache_key)
            if status >= 500:
                log.error("request %s %s failed: %s", method, path, exc, exc_info=status == 500)
            await self._send_error(send, status, payload, _cache_report(exc))

    async def _operator(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/cache/*``, ``/metrics`` and the ``/ui`` dashboard (docs/operations.md), or no route."""
        if scope["path"] == "/openapi.json" and scope["method"] == "GET":  # no auth: describes the API only
            await send_bytes(send, 200, openapi_json(__version__), [JSON_TYPE])
            return
        if not is_admin_path(scope["path"]):
            self._route_error(scope["path"], scope["method"])
        await handle_admin(self.gateway, self.observer, self.ui, scope, send, lambda: self._json_body(scope, receive))

    @staticmethod
    async def _send_error(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        try:
            await send_bytes(send, status, body, [JSON_TYPE, *(extra or ())])
        except Exception:  # response already started (mid-stream): nothing more to say
            log.debug("could not send error response", exc_info=True)

    async def _json_body(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        raw = await read_body(scope, receive, self.gateway.max_body_bytes)
        deep = raw.count(b"[") + raw.count(b"{") > _MAX_DEPTH  # a C-speed count; only such bodies are probed
        if deep:
            _probe_depth(raw)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if deep:
            _check_depth(body)
        return body

    @staticmethod
    def _route_error(path: str, method: str) -> None:
        known = _CHAT_PATHS | _EMBEDDING_PATHS | _MODEL_PATHS | _LIVE_PATHS | _READY_PATHS
        if path in known:
            raise MethodNotAllowed(f"method {method} is not allowed on {path}")
        raise NotFoundError(f"no route {method} {path}", code="not_found")

    async def _models(self, send: Send) -> None:
        data = [
            {"id": name, "object": "model", "created": int(self.started), "owned_by": "reprise"}
            for name in self.gateway.deployments
        ]
        await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}), [JSON_TYPE])

    async def _ready(self, send: Send) -> None:
        cache = self.gateway.cache
        body = {
            "status": "healthy",
            "cache": cache.backend.name if cache else None,
            "cache_backend_failing": bool(cache and cache.stats.backend_errors and cache.failing),
        }
        await send_bytes(send, 200, orjson.dumps(body), [JSON_TYPE])


class MethodNotAllowed(RequestError):
    status = 405


#: orjson writes at most 255 levels: a deeper body could be read but neither hashed into a key
#: nor sent to the provider, so it is refused here (a 400, not a 500). Worse, orjson < 3.9
#: (allowed by our ``orjson>=3.8``) overflows the C stack reading ~100k levels: one request
#: would kill the worker. So a body with many brackets is first parsed by the standard
#: library, whose C scanner raises RecursionError instead (docs/reliability.md).
_MAX_DEPTH = 255


def _probe_depth(raw: bytes) -> None:
    try:
        json.loads(raw)
    except RecursionError:
        raise RequestError(f"the request body nests deeper than {_MAX_DEPTH} levels") from None
    except ValueError:  # not JSON: orjson says why, just after
        pass


def _check_depth(body: dict[str, Any]) -> None:
    try:
        orjson.dumps(body)
    except TypeError:
        raise RequestError(f"the request body nests deeper than {_MAX_DEPTH} levels") from None


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
