"""What every handler needs, built once from the config: routing, cache, upstreams, limits."""

from __future__ import annotations

import hmac
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reprise.backends.registry import load_backend_class
from reprise.cache import AsyncCache
from reprise.config import GatewayConfig
from reprise.core.controls import CacheControls
from reprise.core.policy import BYPASS, CachePlan, CachePolicy, decide
from reprise.errors import AuthError, ConfigError, NotFoundError
from reprise.server.upstream import PROVIDER_BASES, Deployment, HttpUpstream, MockUpstream

log = logging.getLogger("reprise.server")

CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})
EMBEDDING_CALL_TYPES = frozenset({"embedding", "aembedding"})


def resolve_deployments(config: GatewayConfig, default_timeout: float) -> dict[str, list[Deployment]]:
    table: dict[str, list[Deployment]] = {}
    for i, entry in enumerate(config.model_list):
        params = entry.litellm_params
        api_base = params.api_base or PROVIDER_BASES.get(params.provider)
        if api_base is None and params.mock_response is None:
            raise ConfigError(
                f"provider {params.provider!r} has no default api_base; set one",
                f"model_list[{i}].litellm_params.api_base",
            )
        timeout = params.timeout or default_timeout
        table.setdefault(entry.model_name, []).append(
            Deployment(
                model_name=entry.model_name,
                upstream_model=params.upstream_model,
                api_base=api_base or "",
                api_key=params.api_key.get_secret_value() if params.api_key else None,
                timeout=timeout,
                stream_timeout=params.stream_timeout or timeout,
                mock_response=params.mock_response,
            )
        )
    return table


@dataclass
class Gateway:
    """The server's state; one per worker process. Created without I/O; ``aclose`` frees it."""

    config: GatewayConfig
    deployments: dict[str, list[Deployment]]
    cache: AsyncCache | None
    http: HttpUpstream = field(default_factory=HttpUpstream)
    mock: MockUpstream = field(default_factory=MockUpstream)
    master_key: bytes | None = None
    max_body_bytes: int = 8 * 2**20
    cache_chat: bool = False
    cache_embeddings: bool = False
    _round_robin: dict[str, Iterator[Deployment]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Gateway:
        settings = config.litellm_settings
        deployments = resolve_deployments(config, settings.request_timeout)
        cache = None
        call_types: frozenset[str] = frozenset()
        if config.cache_enabled:
            params = config.cache_params
            assert params is not None
            backend_class = load_backend_class(params.type)
            backend = backend_class.from_params(params)
            policy = CachePolicy(
                enabled=True, mode=params.mode, ttl=params.ttl, namespace=params.namespace
            )
            cache = AsyncCache(backend, policy)
            call_types = frozenset(params.supported_call_types)
        master = config.general_settings.master_key
        return cls(
            config=config,
            deployments=deployments,
            cache=cache,
            master_key=master.get_secret_value().encode() if master else None,
            max_body_bytes=int(config.general_settings.max_request_size_mb * 2**20),
            cache_chat=bool(call_types & CHAT_CALL_TYPES),
            cache_embeddings=bool(call_types & EMBEDDING_CALL_TYPES),
        )

    def check_auth(self, authorization: bytes | None) -> None:
        """Bearer master key, compared in constant time; no key configured means open."""
        if self.master_key is None:
            return
        if not authorization or not authorization[:7].lower() == b"bearer ":
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        if not hmac.compare_digest(authorization[7:].strip(), self.master_key):
            raise AuthError("invalid API key", code="invalid_api_key")

    def pick(self, model: str) -> Deployment:
        """Round-robin over the deployments of a model name (LiteLLM load-balances too)."""
        rotation = self._round_robin.get(model)
        if rotation is None:
            choices = self.deployments.get(model)
            if not choices:
                raise NotFoundError(
                    f"The model '{model}' does not exist; available: {sorted(self.deployments)}",
                    param="model",
                    code="model_not_found",
                )
            rotation = self._round_robin[model] = itertools.cycle(choices)
        return next(rotation)

    def upstream(self, deployment: Deployment) -> Any:
        return self.mock if deployment.mock_response is not None else self.http

    def plan(self, controls: CacheControls, enabled_for_call: bool) -> CachePlan:
        if self.cache is None or not enabled_for_call:
            return BYPASS
        return decide(self.cache.policy, controls)

    async def aclose(self) -> None:
        await self.http.aclose()
        if self.cache is not None:
            await self.cache.aclose()
