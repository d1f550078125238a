"""Which way each provider prefix is reached (server/routing.py, server/providers.py), decided
from the config alone: the routing table ``reprise serve`` builds, without a request."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from reprise.config import GatewayConfig
from reprise.providers.anthropic import ANTHROPIC
from reprise.server.routing import build_routes
from reprise.server.upstream import Deployment
from reprise.server.wires import OPENAI, AzureWire


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


def test_openai_entries_read_litellms_environment_for_key_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found from outside: an ``openai/`` entry without ``api_key`` / ``api_base`` (LiteLLM reads
    OPENAI_API_KEY and OPENAI_BASE_URL / OPENAI_API_BASE) was called without credentials, or at
    api.openai.com instead of the endpoint the operator set."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_API_BASE", "http://10.0.0.5:8080/v1/")
    made = _deployment({"model": "openai/gpt-4o"})
    assert (made.api_base, made.api_key) == ("http://10.0.0.5:8080/v1", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.6/v1")  # LiteLLM reads it first
    assert _deployment({"model": "gpt-4o"}).api_base == "http://10.0.0.6/v1"
    own = _deployment({"model": "openai/gpt-4o", "api_key": "sk-own", "api_base": "http://own/v1"})
    assert (own.api_base, own.api_key) == ("http://own/v1", "sk-own")  # the entry's own win
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", "http://vllm:8000/v1")  # no default base: the variable's
    assert _deployment({"model": "hosted_vllm/llama"}).api_base == "http://vllm:8000/v1"


def test_an_entry_that_would_call_a_public_endpoint_with_no_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from reprise.errors import ConfigError

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for model, variable in (("openai/gpt-4o", "OPENAI_API_KEY"), ("groq/llama", "GROQ_API_KEY")):
        with pytest.raises(ConfigError, match=variable) as caught:
            _deployment({"model": model})
        assert caught.value.path == "model_list[0].litellm_params.api_key"
    assert _deployment({"model": "openai/m", "api_base": "http://127.0.0.1:9/v1"}).api_key is None  # own server
    assert _deployment({"model": "ollama/llama3"}).api_key is None  # local by default


def test_ollamas_own_address_is_given_its_openai_api_root() -> None:
    assert _deployment({"model": "ollama/llama3", "api_base": "http://gpu:11434"}).api_base == "http://gpu:11434/v1"
    assert _deployment({"model": "ollama_chat/llama3", "api_base": "http://gpu:11434/v1/"}).api_base \
        == "http://gpu:11434/v1/"  # already the root: as written
    assert _deployment({"model": "ollama/llama3"}).api_base == "http://localhost:11434/v1"


def test_a_claude_name_without_a_prefix_is_anthropics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    made = _deployment({"model": "claude-sonnet-4-5-20250929"})
    assert made.wire is ANTHROPIC and made.upstream_model == "claude-sonnet-4-5-20250929"
    assert _deployment({"model": "gpt-4o", "api_key": "k"}).wire is OPENAI


def test_organization_and_extra_headers_go_with_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found from outside: both were ignored (the key's default organization was billed)."""
    monkeypatch.delenv("OPENAI_ORGANIZATION", raising=False)
    made = _deployment({"model": "openai/gpt-4o", "api_key": "k", "organization": "org-zr",
                        "extra_headers": {"OpenAI-Project": "proj_1", "Authorization": "Bearer stolen"}})
    assert dict(made.extra_headers) == {"OpenAI-Project": "proj_1", "Authorization": "Bearer stolen",
                                        "OpenAI-Organization": "org-zr"}
    monkeypatch.setenv("OPENAI_ORGANIZATION", "org-env")
    assert dict(_deployment({"model": "openai/gpt-4o", "api_key": "k"}).extra_headers) == {
        "OpenAI-Organization": "org-env"}
