"""What every handler needs, built once from the config: routing, cache, upstreams, limits."""

from __future__ import annotations

import hmac
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

from reprise.backends.registry import load_backend_class
from reprise.cache import AsyncCache
from reprise.config import GatewayConfig
from reprise.config.models import LocalCacheParams, SemanticCacheParams
from reprise.config.tenancy import KeyCacheDefaults
from reprise.core.controls import CacheControls
from reprise.core.policy import BYPASS, CachePlan, CachePolicy, decide
from reprise.core.replay_memo import ReplayMemo
from reprise.core.tenancy import partition_namespace
from reprise.errors import AuthError, Forbidden, NotFoundError
from reprise.providers.anthropic import AnthropicUpstream, AnthropicWire
from reprise.server.auth import MASTER, OPEN, KeyStore, Principal, credential_headers, presented_key
from reprise.server.routing import Routes, build_routes
from reprise.server.upstream import Deployment, HttpUpstream, MockUpstream, Upstream

if TYPE_CHECKING:  # the semantic layer needs the ``semantic`` extra (NumPy): import it lazily
    from reprise.embeddings.base import AsyncEmbedder
    from reprise.semantic.cache import SemanticCache
    from reprise.semantic.judge import JudgeCall
    from reprise.semantic.lazy_store import StoreFactory

log = logging.getLogger("reprise.server")

CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
EMBEDDING_CALL_TYPES = frozenset({"embedding", "aembedding"})
RESPONSES_CALL_TYPES = frozenset({"responses", "aresponses"})
TEXT_COMPLETION_CALL_TYPES = frozenset({"text_completion", "atext_completion"})


OTHER_REPLAY_BYTES = 64 * 2**20
"""The replay memo's bound in front of a store that is not in this process's memory."""


def replay_bytes(params: object) -> int:
    """The replay memo's bound: a ``local`` cache's own ``max_bytes`` (at most 256 MiB), so the
    SSE forms of its answers take no more memory than the answers may; 64 MiB otherwise.

    It was 256 MiB for every gateway: with ``max_bytes: 4194304`` 200 streamed hits of 1 MB
    answers grew a worker from 57 to 320 MB, and replays of evicted answers held them alive.
    """
    if isinstance(params, LocalCacheParams):
        return min(ReplayMemo.MAX_BYTES, params.max_bytes)
    return OTHER_REPLAY_BYTES


def with_key_defaults(policy: CachePolicy, defaults: KeyCacheDefaults) -> CachePolicy:
    """A virtual key's own cache defaults replace the gateway's, field by field."""
    return replace(
        policy,
        mode=defaults.mode or policy.mode,
        ttl=defaults.ttl if defaults.ttl is not None else policy.ttl,
        namespace=defaults.namespace if defaults.namespace is not None else policy.namespace,
    )


@dataclass
class Gateway:
    """The server's state; one per worker process. Created without I/O; ``aclose`` frees it."""

    config: GatewayConfig
    deployments: dict[str, list[Deployment]]
    cache: AsyncCache | None
    semantic: SemanticCache | None = None
    http: HttpUpstream = field(default_factory=HttpUpstream)
    mock: MockUpstream = field(default_factory=MockUpstream)
    master_key: bytes | None = None
    allow_open: bool = False
    """``allow_unauthenticated``: with no master key and no other key, anyone is let in. Else closed."""
    max_body_bytes: int = 8 * 2**20
    cache_chat: bool = False
    cache_embeddings: bool = False
    cache_responses: bool = False
    cache_completions: bool = False
    """``/responses`` and legacy ``/completions`` (``supported_call_types``: ``responses``, ``text_completion``)."""
    keys: KeyStore = field(default_factory=lambda: KeyStore([], None))
    shared_namespaces: frozenset[str] = frozenset()
    forwarder: AsyncCache = field(default_factory=AsyncCache)
    """The driver of requests that bypass the cache (or when there is none): it only forwards."""
    sdk: Upstream | None = None
    """The LiteLLM SDK caller (``litellm`` extra), made when a deployment first needs it."""
    routes: Routes | None = None
    """The router (exact names, aliases, wildcards); None: :attr:`deployments` only, by exact name."""
    replays: ReplayMemo = field(default_factory=lambda: ReplayMemo(OTHER_REPLAY_BYTES))
    """The SSE forms of stored chat answers, made once (streamed hits send them as they are)."""
    _round_robin: dict[str, Iterator[Deployment]] = field(default_factory=dict)
    _plans: dict[tuple[CacheControls, str | None], CachePlan] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        settings = config.litellm_settings
        routes = build_routes(config, settings.request_timeout)
        cache = None
        semantic: tuple[SemanticCacheParams, StoreFactory] | None = None
        call_types: frozenset[str] = frozenset()
        params = config.cache_params
        if config.cache_enabled and params is not None:
            backend_class = load_backend_class(params.type)
            backend = backend_class.from_params(params)
            policy = CachePolicy(
                enabled=True, mode=params.mode, ttl=params.default_ttl, namespace=params.namespace
            )
            cache = AsyncCache(backend, policy)
            make_vectors = backend_class.vector_store  # every registered class declares it; None: exact only
            if make_vectors is not None:
                assert isinstance(params, SemanticCacheParams), "pinned by tests/backends/test_registry.py"
                semantic_params = params
                semantic = (semantic_params, lambda dim: make_vectors(semantic_params, dim, backend))
            call_types = frozenset(params.supported_call_types)
        master = config.general_settings.master_key
        gateway = cls(
            config=config,
            deployments=routes.exact,
            routes=routes,
            cache=cache,
            master_key=master.get_secret_value().encode() if master else None,
            allow_open=config.general_settings.allow_unauthenticated,
            max_body_bytes=int(config.general_settings.max_request_size_mb * 2**20),
            cache_chat=bool(call_types & CHAT_CALL_TYPES),
            cache_embeddings=bool(call_types & EMBEDDING_CALL_TYPES),
            cache_responses=bool(call_types & RESPONSES_CALL_TYPES),
            cache_completions=bool(call_types & TEXT_COMPLETION_CALL_TYPES),
            keys=KeyStore(config.general_settings.virtual_keys, config.general_settings.keys_file,
                          config.general_settings.max_parallel_requests_per_key),
            shared_namespaces=frozenset(config.general_settings.shared_namespaces),
            replays=ReplayMemo(replay_bytes(params if config.cache_enabled else None)),
        )
        if semantic is not None:  # after the gateway exists: a model_list embedder calls it
            from reprise.semantic.build import build_semantic

            gateway.semantic = build_semantic(*semantic, gateway.model_embedder, gateway.model_judge)
        return gateway

    def model_embedder(self, name: str) -> AsyncEmbedder | None:
        """An embedder calling the ``model_list`` entry ``name`` in process, or None if absent."""
        if name not in self.deployments:
            return None
        from reprise.server.model_embedder import GatewayEmbedder

        return GatewayEmbedder(self, name)

    def model_judge(self, name: str) -> JudgeCall | None:
        """A caller of the ``model_list`` chat model ``name`` for the semantic judge, or None if absent."""
        if name not in self.deployments:
            return None
        from reprise.server.model_judge import GatewayJudgeCall

        return GatewayJudgeCall(self, name)

    def check_auth(self, headers: list[tuple[bytes, bytes]]) -> Principal:
        """The caller: master key (constant-time compare) or a virtual key; open only when allowed and keyless.

        The key is the bearer token, or without one an ``x-api-key`` / ``api-key`` header
        (for the Anthropic and Azure SDKs). A repeated credential header is a 400 first,
        on an open gateway too (:func:`~reprise.server.auth.credential_headers`)."""
        credentials = credential_headers(headers)
        if self.master_key is None and self.allow_open and not self.keys.in_use:
            return OPEN
        token = presented_key(credentials)
        if self.master_key is not None and hmac.compare_digest(token, self.master_key):
            return MASTER
        principal = self.keys.lookup(token)
        if principal is None:
            raise AuthError("invalid API key", code="invalid_api_key")
        return principal

    def require_master(self, headers: list[tuple[bytes, bytes]]) -> None:
        caller = self.check_auth(headers)
        if not (caller.is_master or caller is OPEN):
            raise Forbidden("this route needs the master key")

    def pick(self, model: str) -> Deployment:
        """Round-robin over the deployments of a model name (LiteLLM load-balances too);
        an alias or a wildcard entry when no exact name matches (:mod:`reprise.server.routing`)."""
        if self.routes is not None:
            return self.routes.pick(model)
        rotation = self._round_robin.get(model)
        if rotation is None:
            choices = self.deployments.get(model)
            if not choices:
                raise NotFoundError(
                    f"The model '{model[:100]}' does not exist; available: {sorted(self.deployments)}",
                    param="model",
                    code="model_not_found",
                )
            rotation = self._round_robin[model] = itertools.cycle(choices)
        return next(rotation)

    def upstream(self, deployment: Deployment) -> Upstream:
        if deployment.sdk_params is not None:  # a provider only the LiteLLM SDK reaches
            if self.sdk is None:
                from reprise.server.sdk_upstream import SdkUpstream

                self.sdk = SdkUpstream()
            return self.sdk
        if deployment.mock_response is not None:
            return self.mock
        if isinstance(deployment.wire, AnthropicWire):
            return self.anthropic
        return self.http

    @cached_property
    def anthropic(self) -> AnthropicUpstream:
        """Anthropic's Messages API over :attr:`http`'s pool and slots (closed with it)."""
        return AnthropicUpstream(self.http)

    def plan(self, controls: CacheControls, enabled_for_call: bool, caller: Principal = OPEN) -> CachePlan:
        """The cache plan for one request, inside the caller's tenant partition.

        Pure in its arguments, so the plans of the few (controls, tenant) pairs a gateway
        sees over and over are remembered (a bounded memo, cleared when full); a key with
        its own cache defaults is decided afresh."""
        if self.cache is None or not enabled_for_call:
            return BYPASS
        if caller.defaults is not None:
            return self._decide(controls, caller)
        memo = (controls, caller.tenant)
        plan = self._plans.get(memo)
        if plan is None:
            if len(self._plans) >= 1024:
                self._plans.clear()
            plan = self._plans[memo] = self._decide(controls, caller)
        return plan

    def _decide(self, controls: CacheControls, caller: Principal) -> CachePlan:
        assert self.cache is not None
        policy = self.cache.policy
        if caller.defaults is not None:
            policy = with_key_defaults(policy, caller.defaults)
        plan = decide(policy, controls)
        if caller.tenant is None or not plan.uses_cache:
            return plan
        namespace = partition_namespace(caller.tenant, plan.namespace, self.shared_namespaces)
        return replace(plan, namespace=namespace)

    async def open(self) -> None:
        """Start-up I/O: the cache store's check (ConfigError: refuse to start)."""
        if self.cache is not None:
            await self.cache.open()

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.cache is not None:
            await self.cache.aclose()
        if self.semantic is not None:
            await self.semantic.aclose()
