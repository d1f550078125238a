"""Every other LiteLLM provider (``bedrock/``, ``cohere/``, ``huggingface/``...) through the LiteLLM SDK.

Reprise calls OpenAI-compatible APIs itself (:class:`~reprise.server.upstream.HttpUpstream`).
For a provider it has no native adapter for, the ``litellm`` extra lets it call
``litellm.acompletion`` / ``litellm.aembedding`` instead: LiteLLM translates the request
to the provider's API and its answer back to OpenAI's shapes. The answer is then
normalised to OpenAI JSON (a ``chat.completion``, an embeddings ``list``) or to
``chat.completion.chunk`` server-sent events ending in ``data: [DONE]``, so the cache,
single-flight and replay stay provider-agnostic: a hit is the bytes the miss sent.

What reaches LiteLLM: the entry's ``litellm_params`` (model with its prefix, api_base,
api_key and provider keys such as ``aws_region_name``; router-only keys such as ``rpm``
left out) and the client's :func:`~reprise.core.keys.provider_params`, which the cache
key covers. A provider error is returned as an :class:`Outcome` with its status (never
stored); a provider that cannot be reached or whose answer cannot be read is an
:class:`UpstreamError` (502/504). LiteLLM is imported on first need, with
LiteLLM's offline switches set (:data:`OFFLINE`), so it downloads nothing of its own
(price map, header lists); ``tests/server/test_litellm_sdk.py`` checks that through a
recording proxy.

Without the extra, :func:`check_sdk_providers` refuses such entries at start (``reprise
serve`` and ``reprise config check`` alike) naming the provider, its models and the
``pip install`` line.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any

import orjson
from pydantic import SecretStr

from reprise.config import GatewayConfig
from reprise.config.models import LiteLLMParams
from reprise.core.answer_bounds import MAX_ANSWER_BYTES, TOO_LARGE_CODE, too_large_message
from reprise.errors import ConfigError, UpstreamError
from reprise.outcome import Outcome
from reprise.server.upstream import CallSlots, Deployment, _no_chunks, _sets_include_usage
from reprise.stream_lead import StreamReply

log = logging.getLogger("reprise.upstream")

INSTALL = "pip install 'reprise[litellm]'"

ROUTER_ONLY = frozenset({"rpm", "tpm", "order", "weight", "tags", "max_budget", "budget_duration",
                         "input_cost_per_token", "output_cost_per_token", "use_in_pass_through",
                         "model_info", "mock_response", "timeout", "stream_timeout", "max_parallel_requests"})
"""``litellm_params`` keys LiteLLM's router reads itself; not passed on to a provider call."""

REQUEST_PARAMS = frozenset({
    "messages", "input", "temperature", "top_p", "top_k", "n", "stop", "max_tokens", "max_completion_tokens",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "logprobs", "top_logprobs",
    "seed", "response_format", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
    "user", "dimensions", "encoding_format", "reasoning_effort", "thinking", "modalities", "audio",
    "prediction", "metadata", "store", "service_tier", "web_search_options", "extra_body",
})
"""OpenAI request parameters. An entry may set them as defaults in LiteLLM (``temperature:
0.1``): not passed, as they would change answers without being in the cache key (as for
every provider, Reprise ignores them and ``reprise config check`` lists them)."""

CLIENT_PARAMS = REQUEST_PARAMS - {"extra_body", "metadata"}
"""What of a client's request is passed to ``litellm.acompletion``. LiteLLM's keyword arguments
mix request parameters with where and how to call (``aws_bedrock_runtime_endpoint``,
``vertex_credentials``, ``ssl_verify``, ``headers``...); a client must choose none of those, so
any other field is refused (400 naming it) rather than passed or silently dropped."""

ROUTER_FEATURES = {"auto_router": "LiteLLM's router choosing a model by the request's content"}
"""Model prefixes that name a LiteLLM router feature, not a provider an SDK call can reach."""


OFFLINE = {"LITELLM_OFFLINE_MODE": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True", "LITELLM_LOCAL_BLOG_POSTS": "True"}
"""LiteLLM's switches for its own downloads (price map, Anthropic beta headers, blog posts...),
read at import: all set, as Reprise reaches nothing at run time beyond the configured providers."""


PROVIDER_FIELDS = ("azure_ad_token", "tenant_id", "client_id", "client_secret", "vertex_project",
                   "vertex_location", "vertex_credentials")
"""LiteLLM provider keys Reprise declares (for its own adapters); passed on too when the SDK calls."""


def load_litellm() -> ModuleType:
    """The ``litellm`` module, imported so that it fetches nothing of its own from the network."""
    os.environ.update(OFFLINE)
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True  # no "Give Feedback" banners on stdout for provider errors
    return litellm


def sdk_installed() -> bool:
    """Whether the ``litellm`` extra is installed (located, not imported)."""
    return importlib.util.find_spec("litellm") is not None


def _models(where: list[tuple[int, str]]) -> str:
    return ", ".join(dict.fromkeys(name for _, name in where))


def check_sdk_providers(entries: dict[str, list[tuple[int, str]]]) -> None:
    """Refuse, naming the key, entries whose provider the LiteLLM SDK is missing for or does not know."""
    first = next(iter(entries.values()))[0][0]
    where = f"model_list[{first}].litellm_params.model"
    if not sdk_installed():
        raise ConfigError("\n".join(
            f"provider {provider!r} (models: {_models(at)}) is reached through the LiteLLM SDK, "
            f"which is not installed: {INSTALL} (or point those entries at an OpenAI-compatible "
            "endpoint, give them mock_response, or remove them)" for provider, at in entries.items()), where)
    for provider, at in entries.items():
        if provider in ROUTER_FEATURES:
            raise ConfigError(f"{provider}/ (models: {_models(at)}) is {ROUTER_FEATURES[provider]}, not a "
                              "provider, and Reprise does not route by content: remove the entry and have clients "
                              "name the models it would choose from (or alias its name to one of them in "
                              "router_settings.model_group_alias)", f"model_list[{at[0][0]}].litellm_params.model")
    known = {str(getattr(p, "value", p)) for p in load_litellm().provider_list}
    unknown = {provider: at for provider, at in entries.items() if provider not in known}
    if unknown:
        first = next(iter(unknown.values()))[0][0]
        raise ConfigError("\n".join(
            f"provider {provider!r} (models: {_models(at)}) is not a LiteLLM provider; check the "
            "prefix of model (provider/model)" for provider, at in unknown.items()),
            f"model_list[{first}].litellm_params.model")


def check_sdk_env(index: int, params: LiteLLMParams) -> None:
    """Refuse an ``os.environ/NAME`` left unresolved in a key passed to LiteLLM (the loader only
    warns for keys Reprise ignores; this one is used)."""
    for key, value in params.extras.items():
        if key in ROUTER_ONLY or key in REQUEST_PARAMS or not isinstance(value, str):
            continue
        if value.startswith("os.environ/"):
            raise ConfigError(f"environment variable {value.removeprefix('os.environ/')!r} is not set "
                              "(the key is passed to the LiteLLM SDK)", f"model_list[{index}].litellm_params.{key}")


def sdk_params(params: LiteLLMParams, drop_params: bool = False) -> dict[str, Any]:
    """What of an entry is passed to ``litellm.acompletion``: the model with its prefix, the
    endpoint and credentials, and the provider keys Reprise does not read itself.

    ``drop_params`` (``litellm_settings.drop_params``, or the entry's own) is LiteLLM's: a
    parameter the provider does not support is dropped instead of refused. It stays in the
    cache key, which is then only more specific than the call."""
    out: dict[str, Any] = {"model": params.model}
    if drop_params:
        out["drop_params"] = True
    if params.api_base:
        out["api_base"] = params.api_base
    if params.api_key:
        out["api_key"] = params.api_key.get_secret_value()
    for name in ("api_version", "organization", "extra_headers", *PROVIDER_FIELDS):
        value = getattr(params, name)
        if value is not None:
            out[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    if isinstance(out.get("vertex_credentials"), dict):  # LiteLLM takes the JSON as a string
        out["vertex_credentials"] = orjson.dumps(out["vertex_credentials"]).decode()
    out.update((k, v) for k, v in params.extras.items() if k not in ROUTER_ONLY and k not in REQUEST_PARAMS)
    return out


def sdk_keys(config: GatewayConfig) -> list[str]:
    """The YAML paths of undeclared ``litellm_params`` keys that :func:`sdk_params` passes to LiteLLM
    (``aws_region_name``...): not "ignored", though Reprise does not read them itself."""
    from reprise.server.routing import needs_sdk

    keys = [f"model_list[{i}].litellm_params.{key}" for i, entry in enumerate(config.model_list)
            if needs_sdk(entry.litellm_params)
            for key in entry.litellm_params.extras if key not in ROUTER_ONLY and key not in REQUEST_PARAMS]
    if keys or any(needs_sdk(entry.litellm_params) for entry in config.model_list):
        keys.append("litellm_settings.drop_params")
    return keys


class SdkUpstream:
    """An :class:`~reprise.server.upstream.Upstream` calling the LiteLLM SDK."""

    def __init__(self) -> None:
        self._slot = CallSlots().slot
        """``max_parallel`` calls in flight per deployment, a wait of ``queue_timeout`` at most."""

    @staticmethod
    def _kwargs(deployment: Deployment, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.items() if k in CLIENT_PARAMS}
        kwargs.update(deployment.sdk_params or {})
        kwargs["timeout"] = deployment.stream_timeout if stream else deployment.timeout
        kwargs["num_retries"] = 0  # the client retries; a cache gateway must not multiply calls
        return kwargs

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        refused = _refuse_unknown(deployment, body)
        if refused is not None:
            return refused
        litellm = load_litellm()
        call = litellm.aembedding if path == "/embeddings" else litellm.acompletion
        async with self._slot(deployment):
            try:
                response = await call(**self._kwargs(deployment, body, stream=False))
            except Exception as exc:
                return _failure(litellm, deployment, exc)
        answer = orjson.dumps(response.model_dump(mode="json"))
        if len(answer) > MAX_ANSWER_BYTES:  # read by the SDK already: at least never stored nor shared
            raise UpstreamError(too_large_message(deployment.model_name), code=TOO_LARGE_CODE)
        return Outcome(200, answer)

    @asynccontextmanager
    async def open_chat_stream(self, deployment: Deployment, path: str, body: dict[str, Any],
                               record_usage: bool) -> AsyncIterator[StreamReply]:
        refused = _refuse_unknown(deployment, body)
        if refused is not None:
            yield StreamReply(refused.status, refused.body, _no_chunks())
            return
        litellm = load_litellm()
        kwargs = self._kwargs(deployment, body, stream=True)
        kwargs["stream"] = True
        options = dict(body.get("stream_options") or {}) if isinstance(body.get("stream_options"), dict) else {}
        if record_usage and not _sets_include_usage(body):
            options["include_usage"] = True
        if options:
            kwargs["stream_options"] = options
        async with self._slot(deployment):
            try:
                stream = await litellm.acompletion(**kwargs)
            except Exception as exc:
                failed = _failure(litellm, deployment, exc)
                yield StreamReply(failed.status, failed.body, _no_chunks())
                return
            yield StreamReply(200, b"", _events(litellm, deployment, stream))

    async def aclose(self) -> None:
        return None


def _refuse_unknown(deployment: Deployment, body: dict[str, Any]) -> Outcome | None:
    """A 400 naming the first field not passed through the SDK (see :data:`CLIENT_PARAMS`)."""
    unknown = next((k for k in body if k not in CLIENT_PARAMS and k not in ("model", "stream", "stream_options")),
                   None)
    if unknown is None:
        return None
    message = (f"model {deployment.model_name!r} is reached through the LiteLLM SDK, which is given "
               f"OpenAI's request parameters only; {unknown[:100]!r} is not one")
    error = {"message": message, "type": "invalid_request_error", "param": unknown[:100],
             "code": "unsupported_parameter"}
    return Outcome(400, orjson.dumps({"error": error}))


async def _events(litellm: ModuleType, deployment: Deployment, stream: Any) -> AsyncIterator[bytes]:
    """LiteLLM's chunks as OpenAI's SSE; ``[DONE]`` only once the SDK's stream ended cleanly."""
    try:
        async for chunk in stream:
            yield b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"
    except Exception as exc:
        failed = _failure(litellm, deployment, exc)
        raise UpstreamError(f"model {deployment.model_name!r}: the provider's stream broke "
                            f"({exc.__class__.__name__})", 504 if failed.status == 504 else 502) from exc
    yield b"data: [DONE]\n\n"


def _failure(litellm: ModuleType, deployment: Deployment, exc: Exception) -> Outcome:
    """A provider's refusal as an Outcome with its status; unreachable or unreadable: UpstreamError."""
    name = deployment.model_name
    log.warning("model %r (LiteLLM SDK): %s: %s", name, exc.__class__.__name__, str(exc)[:500])
    if isinstance(exc, litellm.Timeout):
        raise UpstreamError(f"model {name!r}: the provider timed out", 504) from exc
    if isinstance(exc, litellm.APIConnectionError):
        raise UpstreamError(f"model {name!r}: the provider could not be reached ({exc.__class__.__name__})") \
            from exc
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or not 400 <= status < 600:
        raise UpstreamError(f"model {name!r}: the provider's answer could not be read "
                            f"({exc.__class__.__name__})") from exc
    message = str(getattr(exc, "message", "") or exc)
    error = {"message": message, "type": "upstream_error" if status >= 500 else "invalid_request_error",
             "param": None, "code": getattr(exc, "code", None) or str(status)}
    return Outcome(status, orjson.dumps({"error": error}))
