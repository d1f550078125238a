"""How a deployment's provider is addressed: URL and authentication, per wire dialect.

Azure OpenAI speaks OpenAI's bodies and streams but addresses a *deployment*, not a
model (``{api_base}/openai/deployments/{deployment}/chat/completions?api-version=…``)
and authenticates with an ``api-key`` header. Only the addressing differs, so the
upstream client asks the deployment's wire for both and everything else (the cache,
single-flight, stream storage and replay) stays provider-agnostic.

The body is unchanged, so the cache key (which covers every field sent) still
covers all that reaches the provider; the wire adds only the URL and credentials.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

if TYPE_CHECKING:
    from reprise.server.upstream import Deployment

AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane API version used when neither ``api_version`` nor
``AZURE_API_VERSION`` names one (the latest GA version when this was written)."""


class Wire(Protocol):
    def url(self, deployment: Deployment, path: str) -> str:
        """Where ``path`` (``/chat/completions``, ``/embeddings``) of this deployment is served."""
        ...

    def headers(self, deployment: Deployment) -> dict[str, str]:
        """The request headers: content type and credentials."""
        ...


@dataclass(frozen=True, slots=True)
class OpenAIWire:
    """Any OpenAI-compatible API: ``{api_base}{path}``, ``Authorization: Bearer``."""

    def url(self, deployment: Deployment, path: str) -> str:
        return deployment.api_base.rstrip("/") + path

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if deployment.api_key:
            headers["Authorization"] = f"Bearer {deployment.api_key}"
        elif deployment.basic_auth:
            headers["Authorization"] = "Basic " + base64.b64encode(deployment.basic_auth.encode()).decode()
        return headers


@dataclass(frozen=True, slots=True)
class AzureWire:
    """Azure OpenAI: the deployment in the path, ``api-version`` in the query, ``api-key`` header."""

    api_version: str = AZURE_API_VERSION

    def url(self, deployment: Deployment, path: str) -> str:
        name = quote(deployment.upstream_model, safe="")
        version = quote(self.api_version, safe="")
        return f"{deployment.api_base.rstrip('/')}/openai/deployments/{name}{path}?api-version={version}"

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if deployment.api_key:
            headers["api-key"] = deployment.api_key
        return headers


OPENAI = OpenAIWire()
