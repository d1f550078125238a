"""Which deployment serves a requested model name, as LiteLLM's router decides it.

A name is looked up in this order: an exact ``model_name``; a
``router_settings.model_group_alias`` (an alias is another name for a model group, so
its requests share that group's deployments and rotation); then the wildcard entries
(``*``, ``openai/*``, ``anthropic/*``...), the most specific pattern first (the one with
the most literal characters, as LiteLLM sorts them). A wildcard entry's
``litellm_params.model`` takes the matched text in place of its own ``*``: with
``model_name: "openai/*"`` and ``model: "openai/*"``, a request for ``openai/gpt-4o``
is sent to OpenAI as ``gpt-4o``.

Everything a config can get wrong here is found by :func:`build_routes`, which raises
:class:`ConfigError` naming the key: ``reprise serve`` and ``reprise config check``
both call it, so they never disagree. A wildcard's concrete deployment is built
on first use and remembered (a bounded memo: the names come from clients).

Reprise speaks the OpenAI wire format upstream; ``gemini/``, ``vertex_ai/`` and ``azure/``
differ only in address and credentials, ``anthropic/`` is translated to its Messages API
(:mod:`reprise.server.providers`, :mod:`reprise.providers.anthropic`). Any other
LiteLLM provider (Bedrock, Cohere...) is called through the LiteLLM SDK when the
``litellm`` extra is installed (:mod:`reprise.server.sdk_upstream`), and refused at start,
naming the models and the extra, when it is not.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from reprise.config import GatewayConfig
from reprise.config.environ import env_value
from reprise.config.models import LiteLLMParams
from reprise.errors import ConfigError, NotFoundError
from reprise.server.provider_env import KEY_VARIABLES, env_api_base, env_api_key, openai_endpoint
from reprise.server.providers import RESOLVERS, resolve_access
from reprise.server.sdk_upstream import check_sdk_env, check_sdk_providers, sdk_installed, sdk_params
from reprise.server.upstream import DEFAULT_MAX_PARALLEL, PROVIDER_BASES, Deployment, split_credentials
from reprise.server.wires import OPENAI, Wire

log = logging.getLogger("reprise.server")

OPENAI_WIRE = frozenset(PROVIDER_BASES) | {
    "hosted_vllm", "vllm", "openai_like", "custom_openai", "lm_studio", "xai", "perplexity",
    "deepinfra", "litellm_proxy", "text-completion-openai", "nvidia_nim", "cerebras", "sambanova",
}
"""LiteLLM provider prefixes whose endpoints speak the OpenAI API: the ones Reprise can call."""

ADAPTED = frozenset(RESOLVERS)
"""Providers reached through an adapter (:mod:`reprise.server.providers`)."""



def needs_sdk(params: LiteLLMParams) -> bool:
    """The entry's provider is neither OpenAI-compatible nor adapted: the LiteLLM SDK calls it.

    So is Claude on Vertex AI (``vertex_ai/claude-…``): Vertex serves it through Anthropic's
    API, not through the OpenAI-compatible endpoint the ``vertex_ai/`` adapter uses."""
    if params.mock_response is not None:
        return False
    if params.provider == "vertex_ai":
        return params.upstream_model.startswith("claude")
    return params.provider not in OPENAI_WIRE and params.provider not in ADAPTED


MEMO_LIMIT = 1024
"""Concrete deployments remembered per wildcard route before the memo is cleared."""


@dataclass
class Pattern:
    """A wildcard ``model_name`` and the entries that serve it."""

    name: str
    regex: re.Pattern[str]
    entries: list[tuple[int, LiteLLMParams]]
    memo: dict[str, Iterator[Deployment]] = field(default_factory=dict)

    @property
    def specificity(self) -> int:
        return len(self.name.replace("*", ""))


@dataclass
class Routes:
    """The routing table: exact names, aliases and wildcard patterns."""

    exact: dict[str, list[Deployment]]
    aliases: dict[str, str]
    patterns: list[Pattern]
    config: GatewayConfig
    default_timeout: float
    listed: list[str] = field(default_factory=list)
    """What ``/v1/models`` lists: the exact names, then the aliases not marked ``hidden``."""
    _rotation: dict[str, Iterator[Deployment]] = field(default_factory=dict)

    def pick(self, model: str) -> Deployment:
        """The next deployment for ``model`` (round-robin per name); 404 naming the choices."""
        rotation = self._rotation.get(model)
        if rotation is not None:
            return next(rotation)
        target = self.aliases.get(model, model)
        choices = self.exact.get(target)
        if choices:
            rotation = self._rotation.get(target) or itertools.cycle(choices)
            self._rotation[target] = self._rotation[model] = rotation
            return next(rotation)
        for pattern in self.patterns:
            match = pattern.regex.fullmatch(target)
            if match is None:
                continue
            rotation = pattern.memo.get(target)
            if rotation is None:
                if len(pattern.memo) >= MEMO_LIMIT:
                    pattern.memo.clear()
                concrete = [self._concrete(i, target, params, match.groups()) for i, params in pattern.entries]
                rotation = pattern.memo[target] = itertools.cycle(concrete)
            return next(rotation)
        raise NotFoundError(
            f"The model '{model[:100]}' does not exist; available: {sorted(self.exact)}",
            param="model",
            code="model_not_found",
        )

    def _concrete(self, index: int, model: str, params: LiteLLMParams, parts: tuple[str, ...]) -> Deployment:
        filled = _fill(params.model, parts)
        concrete = params.model_copy(update={"model": filled})
        provider = concrete.provider
        reachable = (concrete.mock_response is not None
                     or (provider in ADAPTED and not needs_sdk(concrete))
                     or (needs_sdk(concrete) and sdk_installed())
                     or (provider in OPENAI_WIRE and _has_base(concrete)))
        if reachable and _needs_key(concrete):
            raise NotFoundError(
                f"The model '{model}' cannot be served here: no key for provider {provider!r} "
                f"(set {' or '.join(KEY_VARIABLES[provider])}, or api_key in model_list[{index}])",
                param="model", code="model_not_found")
        if not reachable:
            raise NotFoundError(
                f"The model '{model}' is served by provider {provider!r}, which Reprise cannot "
                f"reach (model_list[{index}] is a wildcard); ask for a model of a supported provider",
                param="model", code="model_not_found")
        try:
            made = make_deployment(index, model, concrete, self.config, self.default_timeout)
        except ConfigError as exc:  # e.g. gemini/ chosen through a catch-all entry, with no key set
            raise NotFoundError(f"The model '{model}' cannot be served here ({exc})", param="model",
                                code="model_not_found") from None
        return replace(made, entry=f"model_list[{index}]")


def _fill(model: str, parts: tuple[str, ...]) -> str:
    """``model`` with each ``*`` replaced by the next matched part (the last part repeats)."""
    if "*" not in model or not parts:
        return model
    pieces = model.split("*")
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:]):
        out.append(parts[min(n, len(parts) - 1)])
        out.append(piece)
    return "".join(out)


def _regex(name: str) -> re.Pattern[str]:
    return re.compile("(.*)".join(re.escape(part) for part in name.split("*")), re.DOTALL)


def make_deployment(index: int, model_name: str, params: LiteLLMParams, config: GatewayConfig,
                    default_timeout: float) -> Deployment:
    """One entry resolved to what a call needs (its api_base, credentials, limits)."""
    api_base = openai_endpoint(params.provider, params.api_base or env_api_base(params.provider)
                               or PROVIDER_BASES.get(params.provider) or "")
    timeout = params.timeout or default_timeout
    api_key = params.api_key.get_secret_value() if params.api_key else env_api_key(params.provider)
    wire: Wire = OPENAI
    upstream_model, tokens = params.upstream_model, None
    access = resolve_access(index, model_name, params) if params.mock_response is None \
        and not needs_sdk(params) else None
    if access is not None:  # gemini/, vertex_ai/, azure/ (server/providers.py)
        api_base, api_key, upstream_model, wire, tokens = (
            access.api_base, access.api_key, access.upstream_model, access.wire, access.tokens)
    api_base, basic_auth = split_credentials(api_base)
    if basic_auth and api_key:
        log.warning("model_list[%d] (%s): api_base carries credentials and api_key is set; "
                    "the api_key is sent, the URL's credentials are not", index, model_name)
    return Deployment(
        model_name=model_name,
        upstream_model=upstream_model,
        api_base=api_base,
        api_key=api_key,
        basic_auth=basic_auth,
        timeout=timeout,
        stream_timeout=params.stream_timeout or timeout,
        mock_response=params.mock_response,
        max_parallel=params.max_parallel_requests or DEFAULT_MAX_PARALLEL,
        queue_timeout=config.litellm_settings.upstream_queue_timeout,
        wire=wire,
        tokens=tokens,
        extra_headers=_extra_headers(params),
        sdk_params=sdk_params(params, bool(config.litellm_settings.extras.get("drop_params")))
        if needs_sdk(params) else None,
    )


def _extra_headers(params: LiteLLMParams) -> tuple[tuple[str, str], ...]:
    """``extra_headers``, then ``organization`` as ``OpenAI-Organization`` (found from outside: both
    were ignored, so the provider billed the key's default organization)."""
    headers = dict(params.extra_headers or {})
    organization = params.organization or (env_value("OPENAI_ORGANIZATION") if params.provider == "openai" else None)
    if organization and not any(name.lower() == "openai-organization" for name in headers):
        headers["OpenAI-Organization"] = organization
    return tuple(headers.items())


def _has_base(params: LiteLLMParams) -> bool:
    """An endpoint is known: the entry's, LiteLLM's environment variable's, or the provider's default."""
    return params.api_base is not None or params.provider in PROVIDER_BASES or env_api_base(params.provider) is not None


def _needs_key(params: LiteLLMParams) -> bool:
    """The entry would call a provider's public (https) default endpoint with no key at all:
    every request would be a 401, so it is refused at start, as a missing secret is."""
    if params.api_base is not None or env_api_base(params.provider) is not None or params.api_key:
        return False
    default = PROVIDER_BASES.get(params.provider, "")
    return default.startswith("https://") and params.provider in KEY_VARIABLES \
        and env_api_key(params.provider) is None


def _check_provider(config: GatewayConfig) -> None:
    """Refuse the entries Reprise cannot call, grouped by provider, naming what to do."""
    unreachable: dict[str, list[tuple[int, str]]] = {}
    for i, entry in enumerate(config.model_list):
        params = entry.litellm_params
        if params.mock_response is not None or "*" in params.provider:
            continue
        if needs_sdk(params):
            unreachable.setdefault(params.provider, []).append((i, entry.model_name))
            check_sdk_env(i, params)
        elif params.provider in RESOLVERS:
            resolve_access(i, entry.model_name, params)  # ConfigError naming the key
        elif _needs_key(params) and "*" not in params.model:  # a wildcard's: at request time (_concrete)
            raise ConfigError(
                f"a {params.provider}/ model at its public endpoint needs a key: set api_key or "
                f"{' / '.join(KEY_VARIABLES[params.provider])}",
                f"model_list[{i}].litellm_params.api_key",
            )
        elif not _has_base(params):
            raise ConfigError(
                f"provider {params.provider!r} has no default api_base; set api_base to its "
                "OpenAI-compatible endpoint (or the environment variable LiteLLM reads for it)",
                f"model_list[{i}].litellm_params.api_base",
            )
    if unreachable:
        check_sdk_providers(unreachable)


def build_routes(config: GatewayConfig, default_timeout: float | None = None) -> Routes:
    """The routing table of ``config``; ConfigError naming the key for anything it cannot serve."""
    timeout = default_timeout if default_timeout is not None else config.litellm_settings.request_timeout
    _check_provider(config)
    exact: dict[str, list[Deployment]] = {}
    patterns: dict[str, Pattern] = {}
    for i, entry in enumerate(config.model_list):
        if "*" in entry.model_name:
            pattern = patterns.get(entry.model_name)
            if pattern is None:
                pattern = patterns[entry.model_name] = Pattern(entry.model_name, _regex(entry.model_name), [])
            pattern.entries.append((i, entry.litellm_params))
            continue
        exact.setdefault(entry.model_name, []).append(
            make_deployment(i, entry.model_name, entry.litellm_params, config, timeout))
    aliases: dict[str, str] = {}
    listed = list(exact)
    for alias, target in config.router_settings.model_group_alias.items():
        name = target if isinstance(target, str) else target.model
        if isinstance(target, str) or not target.hidden:
            listed.append(alias)
        if name not in exact and not any(p.regex.fullmatch(name) for p in patterns.values()):
            raise ConfigError(
                f"alias {alias!r} names model {name!r}, which no model_list entry serves; "
                f"add it to model_list or fix the alias (models: {', '.join(exact) or 'none'})",
                f"router_settings.model_group_alias.{alias}",
            )
        aliases[alias] = name
    ordered = sorted(patterns.values(), key=lambda p: -p.specificity)
    return Routes(exact, aliases, ordered, config, timeout, list(dict.fromkeys(listed)))
