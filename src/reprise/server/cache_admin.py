"""``/cache/*`` admin routes and ``/metrics``: operating the cache over HTTP.

LiteLLM-compatible where LiteLLM has the route (https://docs.litellm.ai/docs/proxy/caching):
``GET /cache/ping``, ``POST /cache/delete`` ``{"keys": [...]}`` and ``POST /cache/flushall``
(here optionally ``{"namespace": "x"}``). Reprise adds ``GET /cache/stats`` (counters,
savings, ``?series=1`` for the dashboard's time series) and the entry browser
``GET /cache/entries?namespace=&limit=&scan=`` / ``GET /cache/entries/{key}``.
Every ``/cache/*`` route needs the master key; ``/metrics`` only when
``general_settings.metrics_require_auth`` is set. Hit counts are this process's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from reprise.cache import AsyncCache
from reprise.errors import NotFoundError, RequestError
from reprise.observability import inventory
from reprise.observability.metrics import CONTENT_TYPE
from reprise.observability.observer import Observer
from reprise.observability.stats_view import stats_view
from reprise.server.gateway import Gateway
from reprise.server.http import JSON_TYPE, Scope, Send, send_bytes
from reprise.server.ui_assets import UiAssets, is_ui_path

METRICS_PATH = "/metrics"
_PREFIX = "/cache/"
_ENTRY_PREFIX = "/cache/entries/"
_NO_STORE = (b"cache-control", b"no-store")


def is_admin_path(path: str) -> bool:
    """The operator's routes: ``/cache/*``, ``/metrics`` and the ``/ui`` dashboard."""
    return path.startswith(_PREFIX) or path == METRICS_PATH or is_ui_path(path)


class CacheNotConfigured(RequestError):
    status = 503
    error_type = "service_unavailable_error"


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _int(query: dict[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 < int(raw) <= high:
        raise RequestError(f"'{name}' must be an integer from 1 to {high}", param=name)
    return int(raw)


def _cache(gw: Gateway) -> AsyncCache:
    if gw.cache is None:
        raise CacheNotConfigured("Cache not initialized: set litellm_settings.cache: true", code="cache_disabled")
    return gw.cache


def _namespace(value: Any, param: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f"'{param}' must be a string", param=param)
    return value


async def handle_admin(gw: Gateway, observer: Observer, ui: UiAssets, scope: Scope, send: Send,
                       read_json: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Answer one operator request; a POST body is read (``read_json``) only after auth."""
    method: str = scope["method"]
    path: str = scope["path"]
    observer.settle()  # count the requests of the last few ms before showing counts
    if is_ui_path(path):
        await ui.serve(send, method, path)
        return
    if path == METRICS_PATH:
        if method != "GET":
            raise NotFoundError(f"no route {method} {path}", code="not_found")
        if observer.metrics_require_auth:
            gw.require_master(_authorization(scope))
        await send_bytes(send, 200, observer.metrics.registry.render(), [(b"content-type", CONTENT_TYPE)])
        return
    gw.require_master(_authorization(scope))
    body = await read_json() if method == "POST" and _has_body(scope) else {}
    if method == "GET":
        result = await _get(gw, observer, path, _query(scope))
    elif method == "POST":
        result = await _post(gw, observer, path, body)
    else:
        raise NotFoundError(f"no route {method} {path}", code="not_found")
    await send_bytes(send, 200, orjson.dumps(result), [JSON_TYPE, _NO_STORE])


def _has_body(scope: Scope) -> bool:
    """LiteLLM's ``POST /cache/flushall`` takes no body; an empty one means ``{}``."""
    headers = dict(scope["headers"])
    length = headers.get(b"content-length")
    return length not in (None, b"0") or b"transfer-encoding" in headers


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


async def _get(gw: Gateway, observer: Observer, path: str, query: dict[str, str]) -> dict[str, Any]:
    if path == "/cache/ping":
        return await inventory.ping(_cache(gw).backend)
    if path == "/cache/stats":
        view = await stats_view(gw.cache, observer, top=_int(query, "top", 10, 100))
        if query.get("series") in {"1", "true", "yes"}:
            span = _int(query, "span", 3600, 86_400)
            view["series"] = observer.series.export(observer.clock(), span)
        return view
    if path == "/cache/entries":
        backend = _cache(gw).backend
        return await inventory.recent_entries(
            backend, _namespace(query.get("namespace"), "namespace"), _int(query, "limit", 50, 1000),
            _int(query, "scan", 2000, 1_000_000), observer.hits.get,
        )
    if path.startswith(_ENTRY_PREFIX):
        key = path[len(_ENTRY_PREFIX):]
        found = await inventory.entry(_cache(gw).backend, key, observer.hits.get) if key else None
        if found is None:
            raise NotFoundError(f"no live cache entry with key {key!r}", param="key", code="entry_not_found")
        return found
    raise NotFoundError(f"no route GET {path}", code="not_found")


async def _post(gw: Gateway, observer: Observer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path == "/cache/delete":
        keys = body.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise RequestError("'keys' must be a list of cache keys", param="keys")
        deleted = await inventory.delete_keys(_cache(gw).backend, keys)
        for key in keys:
            observer.hits.forget(key)
        return {"status": "success", "deleted": deleted}
    if path == "/cache/flushall":
        namespace = _namespace(body.get("namespace"), "namespace")
        removed = await inventory.flush(_cache(gw).backend, namespace)
        observer.hits.clear(namespace)
        return {"status": "success", "deleted": removed, "namespace": namespace}
    raise NotFoundError(f"no route POST {path}", code="not_found")

