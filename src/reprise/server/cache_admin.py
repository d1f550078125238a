"""``/cache/*`` admin routes and ``/metrics``: operating the cache over HTTP.

LiteLLM-compatible where LiteLLM has the route (https://docs.litellm.ai/docs/proxy/caching):
``GET /cache/ping``, ``POST /cache/delete`` ``{"keys": [...]}`` and ``POST /cache/flushall``
(here optionally ``{"namespace": "x"}``). Reprise adds ``GET /cache/stats`` (counters,
savings, ``?series=1`` for the dashboard's time series) and the entry browser
``GET /cache/entries?namespace=&limit=&scan=`` / ``GET /cache/entries/{key}``.
Who may call each (the master key for ``/cache/*``; ``/metrics`` only with
``general_settings.metrics_require_auth``) is the route table's business
(:mod:`reprise.server.routes`), checked before these handlers run. ``/metrics`` and
``/cache/stats`` answer for the machine with ``--workers N`` (:mod:`reprise.observability.workers`);
per-entry hit counts (``/cache/entries``) are this process's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from reprise.cache import AsyncCache
from reprise.core.body import refuse_unknown_fields
from reprise.errors import CacheNotConfigured, NotFoundError, RequestError
from reprise.observability import inventory
from reprise.observability.metrics import CONTENT_TYPE
from reprise.observability.observer import Observer
from reprise.observability.stats_view import stats_view
from reprise.observability.workers import WorkerMetrics
from reprise.server.gateway import Gateway
from reprise.server.http import JSON_TYPE, Scope, send_bytes
from reprise.server.routes import Call, JsonReader

ENTRY_PREFIX = "/cache/entries/"
_DELETE_FIELDS = frozenset({"keys"})
_FLUSH_FIELDS = frozenset({"namespace"})
_NO_STORE = (b"cache-control", b"no-store")


class CacheAdmin:
    """The handlers of ``/cache/*`` and ``/metrics``, over the gateway's cache and observer.

    Each handler first settles the observer, so counts include requests of the last few ms.
    """

    def __init__(self, gateway: Gateway, observer: Observer, workers: WorkerMetrics, read_json: JsonReader) -> None:
        self.gateway = gateway
        self.observer = observer
        self.workers = workers
        self.read_json = read_json

    async def ping(self, call: Call) -> None:
        self.observer.settle()
        await _answer(call, await inventory.ping(self._cache().backend))

    async def stats(self, call: Call) -> None:
        query = _query(call.scope)
        top, span = _int(query, "top", 10, 100), _int(query, "span", 3600, 86_400)
        machine = self.workers.view()  # settles this worker's counts first
        view = await stats_view(self.gateway.cache, self.observer, machine, top=top)
        if query.get("series") in {"1", "true", "yes"}:
            view["series"] = machine.series(self.observer.clock(), span)
        await _answer(call, view)

    async def entries(self, call: Call) -> None:
        self.observer.settle()
        query = _query(call.scope)
        backend = self._cache().backend
        found = await inventory.recent_entries(
            backend, _namespace(query.get("namespace"), "namespace"), _int(query, "limit", 50, 1000),
            _int(query, "scan", 2000, 1_000_000), self.observer.hits.get,
        )
        await _answer(call, found)

    async def entry(self, call: Call) -> None:
        """``GET /cache/entries/{key}``: the key is the rest of the path, as stored."""
        self.observer.settle()
        key = call.scope["path"][len(ENTRY_PREFIX):]
        found = await inventory.entry(self._cache().backend, key, self.observer.hits.get) if key else None
        if found is None:
            raise NotFoundError(f"no live cache entry with key {key!r}", param="key", code="entry_not_found")
        await _answer(call, found)

    async def delete(self, call: Call) -> None:
        self.observer.settle()
        keys = (await self._body(call, _DELETE_FIELDS)).get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise RequestError("'keys' must be a list of cache keys", param="keys")
        deleted = await inventory.delete_keys(self._cache().backend, keys)
        for key in keys:
            self.observer.hits.forget(key)
        await _answer(call, {"status": "success", "deleted": deleted})

    async def flushall(self, call: Call) -> None:
        self.observer.settle()
        given = (await self._body(call, _FLUSH_FIELDS)).get("namespace")
        if given == "":  # found from outside: read as "none given", it flushed every tenant's entries
            raise RequestError("'namespace' must not be empty (omit it to flush the whole cache)", param="namespace")
        namespace = _namespace(given, "namespace")
        removed = await inventory.flush(self._cache().backend, namespace)
        self.observer.hits.clear(namespace)
        await _answer(call, {"status": "success", "deleted": removed, "namespace": namespace})

    async def metrics(self, call: Call) -> None:
        """Prometheus text format (docs/operations.md): the machine's sums with ``--workers N``."""
        text = self.workers.view().registry.render()
        await send_bytes(call.send, 200, text, [(b"content-type", CONTENT_TYPE)])

    def _cache(self) -> AsyncCache:
        if self.gateway.cache is None:
            raise CacheNotConfigured()
        return self.gateway.cache

    async def _body(self, call: Call, accepted: frozenset[str]) -> dict[str, Any]:
        """The JSON body, every field in ``accepted`` (else 400). LiteLLM's ``POST /cache/flushall``
        takes no body; an empty one means ``{}``."""
        headers = dict(call.scope["headers"])
        length = headers.get(b"content-length")
        if length in (None, b"0") and b"transfer-encoding" not in headers:
            return {}
        body = await self.read_json(call.scope, call.receive)
        refuse_unknown_fields(body, accepted)
        return body


async def _answer(call: Call, result: dict[str, Any]) -> None:
    await send_bytes(call.send, 200, orjson.dumps(result), [JSON_TYPE, _NO_STORE])


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}


def _int(query: dict[str, str], name: str, default: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= high:  # "²" is a digit to isdigit()
        raise RequestError(f"'{name}' must be an integer from 1 to {high}", param=name)
    return int(raw)


def _namespace(value: Any, param: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RequestError(f"'{param}' must be a string", param=param)
    return value
