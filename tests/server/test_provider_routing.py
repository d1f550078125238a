"""Which way each provider prefix is reached (server/routing.py, server/providers.py), decided
from the config alone: the routing table ``reprise serve`` builds, without a request."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from reprise.config import GatewayConfig
from reprise.server.routing import build_routes
from reprise.server.upstream import Deployment
from reprise.server.wires import AzureWire


def _deployment(params: dict[str, Any]) -> Deployment:
    config = GatewayConfig.model_validate({"model_list": [{"model_name": "m", "litellm_params": params}]})
    return build_routes(config).exact["m"][0]


def test_gemini_defaults_to_googles_openai_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    made = _deployment({"model": "gemini/gemini-2.0-flash"})
    assert (made.api_base, made.api_key, made.upstream_model) == (
        "https://generativelanguage.googleapis.com/v1beta/openai", "k", "gemini-2.0-flash")
    assert made.sdk_params is None and made.tokens is None


def test_vertex_address_from_project_and_location() -> None:
    credentials = {"type": "service_account", "project_id": "from-creds"}
    made = _deployment({"model": "vertex_ai/gemini-2.0-flash", "vertex_credentials": credentials,
                        "vertex_location": "global"})
    assert made.api_base == ("https://aiplatform.googleapis.com/v1/projects/from-creds/locations/global"
                             "/endpoints/openapi")
    assert made.upstream_model == "google/gemini-2.0-flash" and made.tokens is not None
    regional = _deployment({"model": "vertex_ai/gemini-2.0-flash", "vertex_credentials": credentials,
                            "vertex_project": "p"})
    assert regional.api_base.startswith("https://us-central1-aiplatform.googleapis.com/v1/projects/p/")


@pytest.mark.skipif(importlib.util.find_spec("litellm") is None, reason="needs the litellm extra")
def test_claude_on_vertex_goes_through_the_sdk() -> None:
    made = _deployment({"model": "vertex_ai/claude-sonnet-4", "vertex_project": "p", "vertex_location": "us-east5"})
    assert made.sdk_params is not None and made.sdk_params["model"] == "vertex_ai/claude-sonnet-4"
    assert made.sdk_params["vertex_project"] == "p" and made.tokens is None


def test_azure_wire_and_token_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_API_KEY", "AZURE_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    keyed = _deployment({"model": "azure/d", "api_base": "https://r.openai.azure.com", "api_key": "k"})
    assert isinstance(keyed.wire, AzureWire) and keyed.api_key == "k" and keyed.tokens is None
    entra = _deployment({"model": "azure/d", "api_base": "https://r.openai.azure.com"})
    assert entra.api_key is None and entra.tokens is not None
