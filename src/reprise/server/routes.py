"""The route table: every path the gateway answers, its methods, its handler, and who may call it.

One table instead of ``if`` chains spread over modules, so that every route answers a
wrong method the same way (405 with ``Allow``), an unknown path the same way (404), and
checks its caller from the same column before its handler runs. Both errors are
OpenAI's error JSON (:mod:`reprise.server.errors`). Path and method are checked before
the caller, so a 404 or 405 needs no key: it tells nothing this (documented) table does not.

Finding a route is a dict lookup by path, then by method: the hot path (``POST
/chat/completions``) never scans a list or runs a regex. Only paths missing from that
dict are tried against the few prefix routes (``/cache/entries/{key}``, ``/ui/...``).

``HEAD`` is served wherever ``GET`` is, by the ``GET`` handler with its body dropped
(RFC 9110 §9.3.2), and is listed in ``Allow``: load balancers probe health routes with
it, and answering 405 to a method every HTTP client may send would only surprise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from reprise.errors import MethodNotAllowed, NotFoundError
from reprise.server.auth import MASTER, OPEN, Principal
from reprise.server.http import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from reprise.observability.observer import RequestRecord
    from reprise.server.cache_admin import CacheAdmin
    from reprise.server.gateway import Gateway
    from reprise.server.keys_admin import KeysAdmin


class Access(Enum):
    """Who may call a route. A gateway with no key at all (no master key, no virtual key) is open."""

    PUBLIC = "public"
    """Anyone; no key is read (health, the OpenAPI document, the dashboard's static files)."""
    KEY = "key"
    """The master key or any virtual key (the OpenAI API): 401 without one."""
    MASTER = "master"
    """The master key only (operating the gateway): 401 without a key, 403 for a virtual key."""


@dataclass(slots=True)
class Call:
    """One routed request, as every handler receives it."""

    scope: Scope
    receive: Receive
    send: Send
    caller: Principal
    """Who was admitted: a key's principal; ``OPEN`` on a public route; ``MASTER`` on a master route."""
    record: RequestRecord | None
    """The observer's record of an observed (API) route, else None."""


Handler = Callable[[Call], Awaitable[None]]
#: Reads a request's body as a JSON object (the application's bounded, depth-checked reader).
JsonReader = Callable[[Scope, Receive], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the table: ``methods`` on each of ``paths`` go to ``handler``, for ``access``."""

    methods: frozenset[str]
    paths: tuple[str, ...]
    handler: Handler
    access: Access
    prefix: bool = False
    """``paths`` are prefixes: the rest of the path is the handler's to read (a key, a file)."""
    observed: bool = False
    """Counted and logged by the observer (the API routes, whatever the method)."""
    reshape: Callable[[Send], Send] | None = None
    """Wraps the route's ``send`` (before the caller is checked), so every answer of the route,
    its errors included, is in another API's shape (Anthropic's Messages API)."""


class RouteTable:
    """The routes indexed for lookup: ``path -> method -> Route``, prefixes apart."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._exact: dict[str, dict[str, Route]] = {}
        prefixes: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            for path in route.paths:
                by_method = (prefixes if route.prefix else self._exact).setdefault(path, {})
                for method in route.methods | ({"HEAD"} if "GET" in route.methods else set()):
                    if method in by_method:
                        raise ValueError(f"two routes for {method} {path}")
                    by_method[method] = route
        # longest first, so a more specific prefix wins
        self._prefixes = sorted(prefixes.items(), key=lambda item: -len(item[0]))
        self.observed_paths = frozenset(
            path for route in self.routes if route.observed and not route.prefix for path in route.paths
        )

    def resolve(self, method: str, path: str) -> Route:
        """The route for a request; :class:`NotFoundError` or :class:`MethodNotAllowed` if none."""
        by_method = self._exact.get(path)
        if by_method is None:
            by_method = self._by_prefix(path)
            if by_method is None:
                raise NotFoundError(f"no route {method} {path}", code="not_found")
        route = by_method.get(method)
        if route is None:
            raise MethodNotAllowed(f"method {method} is not allowed on {path}", allowed=by_method)
        return route

    def _by_prefix(self, path: str) -> dict[str, Route] | None:
        for prefix, by_method in self._prefixes:
            if path.startswith(prefix):
                return by_method
        return None


_PUBLIC, _KEY = Access.PUBLIC, Access.KEY  # module globals: cheaper to read than Enum attributes


def admit(gateway: Gateway, access: Access, scope: Scope) -> Principal:
    """Check the caller against a route's access before its handler runs (401/403 here)."""
    if access is _KEY:  # first: the API's routes are the hot path
        return gateway.check_auth(scope["headers"])
    if access is _PUBLIC:
        return OPEN
    gateway.require_master(scope["headers"])
    return MASTER


def without_body(send: Send) -> Send:
    """``send`` for a ``HEAD`` request: the ``GET`` answer's status and headers, no body."""

    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


class ApiHandlers(Protocol):
    """The handlers the application itself provides (the OpenAI API, health, docs, dashboard)."""

    async def chat(self, call: Call) -> None: ...
    async def embeddings(self, call: Call) -> None: ...
    async def responses(self, call: Call) -> None: ...
    async def completions(self, call: Call) -> None: ...
    async def azure_deployment(self, call: Call) -> None: ...
    async def messages(self, call: Call) -> None: ...
    async def count_tokens(self, call: Call) -> None: ...
    async def models(self, call: Call) -> None: ...
    async def liveness(self, call: Call) -> None: ...
    async def readiness(self, call: Call) -> None: ...
    async def openapi(self, call: Call) -> None: ...
    async def dashboard(self, call: Call) -> None: ...


GET = frozenset({"GET"})
POST = frozenset({"POST"})
#: The aliases of one route (OpenAI's paths with and without ``/v1``, LiteLLM's health names);
#: :mod:`reprise.server.openapi` documents the same tuples.
CHAT_PATHS = ("/chat/completions", "/v1/chat/completions")
EMBEDDING_PATHS = ("/embeddings", "/v1/embeddings")
RESPONSES_PATHS = ("/responses", "/v1/responses")
COMPLETIONS_PATHS = ("/completions", "/v1/completions")
MODEL_PATHS = ("/models", "/v1/models")
#: Azure OpenAI's inbound form, for the ``AzureOpenAI`` client:
#: ``/openai/deployments/{model}/chat/completions|embeddings?api-version=…``.
AZURE_DEPLOYMENTS = "/openai/deployments/"
#: The same, as the OpenAPI document templates them.
AZURE_PATHS = (AZURE_DEPLOYMENTS + "{deployment}/chat/completions", AZURE_DEPLOYMENTS + "{deployment}/embeddings")
#: Anthropic's Messages API, for the ``anthropic`` SDK and agents using ``ANTHROPIC_BASE_URL``.
MESSAGES_PATHS = ("/v1/messages", "/messages")
COUNT_TOKENS_PATHS = ("/v1/messages/count_tokens", "/messages/count_tokens")
LIVENESS_PATHS = ("/health/liveliness", "/health/liveness", "/livez")
READINESS_PATHS = ("/health/readiness", "/readyz", "/health")


def build_routes(api: ApiHandlers, cache: CacheAdmin, keys: KeysAdmin, *, metrics: Access,
                 anthropic: Callable[[Send], Send] | None = None) -> RouteTable:
    """Every route of the gateway. ``metrics`` is ``/metrics``' access (``metrics_require_auth``);
    ``anthropic`` reshapes the answers of the Messages routes (:mod:`reprise.server.messages`).

    Paths follow OpenAI's API with and without ``/v1`` and LiteLLM's proxy
    (https://docs.litellm.ai/docs/proxy/health, /caching, /virtual_keys), with its aliases.
    """
    public, key, master = Access.PUBLIC, Access.KEY, Access.MASTER
    return RouteTable([
        Route(POST, CHAT_PATHS, api.chat, key, observed=True),
        Route(POST, EMBEDDING_PATHS, api.embeddings, key, observed=True),
        Route(POST, RESPONSES_PATHS, api.responses, key, observed=True),
        Route(POST, COMPLETIONS_PATHS, api.completions, key, observed=True),
        Route(GET, MODEL_PATHS, api.models, key),
        Route(POST, (AZURE_DEPLOYMENTS,), api.azure_deployment, key, prefix=True),
        Route(POST, MESSAGES_PATHS, api.messages, key, observed=True, reshape=anthropic),
        Route(POST, COUNT_TOKENS_PATHS, api.count_tokens, key, reshape=anthropic),
        Route(GET, LIVENESS_PATHS, api.liveness, public),
        Route(GET, READINESS_PATHS, api.readiness, public),
        Route(GET, ("/openapi.json",), api.openapi, public),
        Route(POST, ("/key/generate",), keys.generate_key, master),
        Route(POST, ("/key/delete",), keys.delete_keys, master),
        Route(GET, ("/key/list",), keys.list_keys, master),
        Route(GET, ("/cache/ping",), cache.ping, master),
        Route(GET, ("/cache/stats",), cache.stats, master),
        Route(GET, ("/cache/entries",), cache.entries, master),
        Route(GET, ("/cache/entries/",), cache.entry, master, prefix=True),
        Route(POST, ("/cache/delete",), cache.delete, master),
        Route(POST, ("/cache/flushall",), cache.flushall, master),
        Route(GET, ("/metrics",), cache.metrics, metrics),
        Route(GET, ("/ui",), api.dashboard, public),
        Route(GET, ("/ui/",), api.dashboard, public, prefix=True),
    ])
