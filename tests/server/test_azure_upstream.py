"""``azure/<deployment>`` models (issue 14 item 1) through ``reprise serve`` against a stand-in
that speaks only Azure OpenAI's data-plane wire format (tests/support/azure_standin.py):
the deployment path, ``api-version``, the ``api-key`` header; chat plain, streamed and
replayed, tool calls, embeddings, provider errors not cached, LiteLLM's AZURE_* variables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.server.test_sdk_and_config import run_cli
from tests.support.azure_standin import AzureStandIn


@pytest.fixture(scope="module")
def azure() -> Iterator[AzureStandIn]:
    with AzureStandIn(api_key="azure-key", api_version="2024-10-21") as standin:
        yield standin


def azure_config(azure: AzureStandIn, **params: Any) -> dict[str, Any]:
    def entry(name: str, deployment: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"azure/{deployment}", "api_base": azure.url,
                                                        "api_key": "azure-key", "api_version": "2024-10-21",
                                                        **params}}
    return {
        "model_list": [entry("gpt-4o", "my-gpt4o"), entry("embed", "my-embedder"), entry("busy", "throttled")],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}},
    }


@pytest.fixture(scope="module")
def sdk(azure: AzureStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    gw = GatewayProcess(azure_config(azure), tmp_path_factory.mktemp("az")).start()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        yield client
    gw.stop()


def test_chat_miss_then_hit_on_the_deployment_path(sdk: openai.OpenAI, azure: AzureStandIn) -> None:
    before = len(azure.requests)
    messages = [{"role": "user", "content": unique()}]
    first = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    second = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert [(r["deployment"], r["operation"]) for r in azure.requests[before:]] == [("my-gpt4o", "chat/completions")]
    assert azure.rejected == []


def test_stream_is_stored_and_replayed(sdk: openai.OpenAI, azure: AzureStandIn) -> None:
    before = len(azure.requests)
    messages = [{"role": "user", "content": unique()}]

    def text() -> str:
        stream = sdk.chat.completions.create(model="gpt-4o", messages=messages, stream=True)  # type: ignore[arg-type]
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    first, replayed = text(), text()
    assert first.startswith("azure my-gpt4o answer") and replayed == first
    assert len(azure.requests) - before == 1
    assert azure.rejected == []


def test_tool_calls_reach_azure_and_come_back(sdk: openai.OpenAI, azure: AzureStandIn) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    answer = sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": unique()}],  # type: ignore[arg-type]
                                         tools=tools)  # type: ignore[arg-type]
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert azure.requests[-1]["body"]["tools"] == tools


def test_embeddings_miss_then_hit(sdk: openai.OpenAI, azure: AzureStandIn) -> None:
    before = len(azure.requests)
    words = [unique("a"), unique("b")]
    first = sdk.embeddings.create(model="embed", input=words)
    second = sdk.embeddings.create(model="embed", input=words)
    assert [d.embedding for d in first.data] == [d.embedding for d in second.data]
    assert [(r["deployment"], r["operation"]) for r in azure.requests[before:]] == [("my-embedder", "embeddings")]


def test_provider_errors_are_passed_on_and_not_cached(sdk: openai.OpenAI, azure: AzureStandIn) -> None:
    before = len(azure.requests)
    messages = [{"role": "user", "content": unique()}]
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            sdk.chat.completions.create(model="busy", messages=messages)  # type: ignore[arg-type]
        assert caught.value.response.headers["retry-after"] == "1"
    assert len(azure.requests) - before == 2


def test_provider_headers_pass_on_misses_and_never_replay_from_cache(sdk: openai.OpenAI,
                                                                      azure: AzureStandIn) -> None:
    """Rate limits and request ids describe one call at one moment: a hit must not carry them."""
    messages = [{"role": "user", "content": unique()}]
    miss = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    hit = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    call = len(azure.requests)
    assert miss.headers["x-reprise-cache"] == "miss"
    assert miss.headers["llm_provider-x-request-id"] == f"req-{call}"  # the gateway's own x-request-id stays
    assert miss.headers["apim-request-id"] == f"apim-{call}"
    assert miss.headers["x-ratelimit-remaining-requests"] == str(1000 - call)
    assert "x-internal-secret" not in miss.headers  # only the headers a client can use
    assert hit.headers["x-reprise-cache"] == "hit"
    assert not any(name.startswith("x-ratelimit-") or name in ("llm_provider-x-request-id", "apim-request-id")
                   for name in hit.headers)


def test_litellm_azure_environment_variables(azure: AzureStandIn, make_gateway: Callable[..., GatewayProcess],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_API_BASE", azure.url)
    monkeypatch.setenv("AZURE_API_KEY", "azure-key")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-10-21")
    config = {"model_list": [{"model_name": "gpt-4o", "litellm_params": {"model": "azure/from-env"}}],
              "general_settings": {"master_key": MASTER_KEY}}
    gw = make_gateway(config)
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": unique()}])
    assert azure.requests[-1]["deployment"] == "from-env"
    assert azure.rejected == []


def test_an_azure_model_without_endpoint_is_refused_by_check_and_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Without a key it is served with Entra ID tokens: tests/server/test_azure_entra.py.)"""
    for name in ("AZURE_API_BASE", "AZURE_API_KEY", "AZURE_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    for params, key in (({}, "api_base"),):
        config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "azure/d", **params}}],
                  "general_settings": {"master_key": "sk-test-master-key"}}
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        for command in (("config", "check"), ("serve",)):
            result = run_cli(*command, "--config", str(path), "--port", "0") if command == ("serve",) \
                else run_cli(*command, "--config", str(path))
            assert result.returncode == 2
            assert f"model_list[0].litellm_params.{key}" in result.stderr


def test_streamed_miss_carries_provider_headers_and_its_replay_does_not(sdk: openai.OpenAI,
                                                                        azure: AzureStandIn) -> None:
    messages = [{"role": "user", "content": unique()}]

    def headers() -> dict[str, str]:
        with sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o", messages=messages, stream=True) as response:  # type: ignore[arg-type]
            for _ in response.iter_lines():
                pass
            return dict(response.headers)

    miss, replay = headers(), headers()
    assert miss["x-reprise-cache"] == "miss"
    assert miss["llm_provider-x-request-id"] == f"req-{len(azure.requests)}"
    assert "x-ratelimit-remaining-requests" in miss
    assert replay["x-reprise-cache"] == "hit"
    assert not any(name.startswith("x-ratelimit-") or name == "llm_provider-x-request-id" for name in replay)
