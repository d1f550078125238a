"""How a ``gemini/``, ``vertex_ai/`` or ``azure/`` entry is reached: endpoint, credentials, model name.

All three speak OpenAI's bodies and streams (Gemini and Vertex AI through Google's
OpenAI-compatible endpoints, Azure with its own addressing, :mod:`reprise.server.wires`),
so the cache, single-flight and replay treat them as any OpenAI provider; only the
URL, the credentials and the model name sent differ, and they are settled here once,
from the entry and LiteLLM's environment variables.

:func:`resolve_access` is called by both ``reprise config check`` and ``reprise serve``
(through :func:`reprise.server.routing.build_routes`), so a missing key or project is
refused by both alike, with a :class:`ConfigError` naming the YAML key. It does no
network I/O: tokens are fetched on first use (:mod:`reprise.server.credentials`).

- Gemini: https://ai.google.dev/gemini-api/docs/openai (``Authorization: Bearer <key>``).
- Vertex AI: https://cloud.google.com/vertex-ai/generative-ai/docs/migrate/openai/overview
  (``…/endpoints/openapi/chat/completions``, model ``google/<model>``, an OAuth access token).
- Azure Entra ID: https://learn.microsoft.com/azure/ai-services/openai/how-to/managed-identity
  (the token as ``Authorization: Bearer``, scope ``https://cognitiveservices.azure.com/.default``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from reprise.config.environ import env_value
from reprise.config.models import LiteLLMParams
from reprise.errors import ConfigError
from reprise.providers.anthropic import ANTHROPIC, api_key_of, messages_url
from reprise.server.credentials import (
    StaticToken,
    TokenSource,
    azure_tokens,
    google_tokens,
    read_google_credentials,
)
from reprise.server.wires import AZURE_API_VERSION, OPENAI, AzureWire, Wire

GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta/openai"
VERTEX_LOCATION = "us-central1"
"""LiteLLM's default ``vertex_location``."""


@dataclass(frozen=True, slots=True)
class Access:
    """Where and as whom an entry's requests go."""

    api_base: str
    api_key: str | None
    upstream_model: str
    wire: Wire = OPENAI
    tokens: TokenSource | None = None
    """A bearer token fetched (and refreshed) per call, sent instead of a fixed key."""


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter is not None else None


def _gemini(index: int, model_name: str, params: LiteLLMParams) -> Access:
    key = _secret(params.api_key) or env_value("GEMINI_API_KEY")
    if not key:
        raise ConfigError("a gemini/ model needs a Google AI Studio key: set api_key or GEMINI_API_KEY",
                          f"model_list[{index}].litellm_params.api_key")
    return Access(params.api_base or GEMINI_API_BASE, key, params.upstream_model)


def _vertex(index: int, model_name: str, params: LiteLLMParams) -> Access:
    where = f"model_list[{index}].litellm_params"
    if importlib.util.find_spec("google.auth") is None:
        raise ConfigError("vertex_ai/ models get their access tokens from google-auth, which is not "
                          "installed: pip install 'reprise[vertex]'", f"{where}.model")
    info = None
    if params.vertex_credentials is not None:
        raw = params.vertex_credentials
        try:
            info = read_google_credentials(raw if isinstance(raw, dict) else raw.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"vertex_credentials {exc}; give a service-account JSON or its path",
                              f"{where}.vertex_credentials") from None
    project = (params.vertex_project or env_value("VERTEXAI_PROJECT", "VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT")
               or (info or {}).get("project_id") or (info or {}).get("quota_project_id"))
    if not project:
        raise ConfigError("a vertex_ai/ model needs its Google Cloud project: set vertex_project or "
                          "VERTEXAI_PROJECT", f"{where}.vertex_project")
    location = params.vertex_location or env_value("VERTEXAI_LOCATION", "VERTEX_LOCATION") or VERTEX_LOCATION
    host = params.api_base or ("https://aiplatform.googleapis.com" if location == "global"
                               else f"https://{location}-aiplatform.googleapis.com")
    api_base = (f"{host.rstrip('/')}/v1/projects/{quote(str(project), safe='')}"
                f"/locations/{quote(location, safe='')}/endpoints/openapi")
    model = params.upstream_model if "/" in params.upstream_model else f"google/{params.upstream_model}"
    return Access(api_base, None, model, tokens=google_tokens(info, f"model {model_name!r}"))


def _azure(index: int, model_name: str, params: LiteLLMParams) -> Access:
    where = f"model_list[{index}].litellm_params"
    api_base = params.api_base or env_value("AZURE_API_BASE")
    if not api_base:
        raise ConfigError("an azure/ model needs its resource's endpoint: set api_base "
                          "(https://<resource>.openai.azure.com) or AZURE_API_BASE", f"{where}.api_base")
    wire = AzureWire(params.api_version or env_value("AZURE_API_VERSION") or AZURE_API_VERSION)
    key = _secret(params.api_key) or env_value("AZURE_API_KEY")
    if key:
        return Access(api_base, key, params.upstream_model, wire)
    ad_token = _secret(params.azure_ad_token) or env_value("AZURE_AD_TOKEN")
    if ad_token:
        return Access(api_base, None, params.upstream_model, wire, StaticToken(ad_token))
    if importlib.util.find_spec("azure.identity") is None:
        raise ConfigError("an azure/ model needs a key or an Entra ID token: set api_key (AZURE_API_KEY) "
                          "or azure_ad_token (AZURE_AD_TOKEN), or pip install 'reprise[azure]' to get "
                          "tokens from azure-identity", f"{where}.api_key")
    tokens = azure_tokens(params.tenant_id or env_value("AZURE_TENANT_ID"),
                          params.client_id or env_value("AZURE_CLIENT_ID"),
                          _secret(params.client_secret) or env_value("AZURE_CLIENT_SECRET"), f"model {model_name!r}")
    return Access(api_base, None, params.upstream_model, wire, tokens)


def _anthropic(index: int, model_name: str, params: LiteLLMParams) -> Access:
    """Anthropic's Messages API (:mod:`reprise.providers.anthropic` translates the bodies)."""
    key = api_key_of(_secret(params.api_key))
    if key is None:
        raise ConfigError("an anthropic/ model needs a key: set api_key or ANTHROPIC_API_KEY",
                          f"model_list[{index}].litellm_params.api_key")
    return Access(messages_url(params.api_base or None), key, params.upstream_model, ANTHROPIC)


RESOLVERS: dict[str, Callable[[int, str, LiteLLMParams], Access]] = {
    "anthropic": _anthropic,
    "gemini": _gemini,
    "vertex_ai": _vertex,
    "azure": _azure,
}
"""The providers whose access is settled here, by LiteLLM prefix."""


def resolve_access(index: int, model_name: str, params: LiteLLMParams) -> Access | None:
    """The access of ``model_list[index]``, or None for a provider that needs nothing special."""
    resolver = RESOLVERS.get(params.provider)
    return resolver(index, model_name, params) if resolver is not None else None
