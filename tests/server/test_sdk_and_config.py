"""The OpenAI SDK against Reprise, persistence with the disk backend, and config errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream


def test_openai_sdk_with_extra_body(gateway: GatewayProcess, upstream: StubUpstream) -> None:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY) as sdk:
        _exercise_sdk(sdk)
    assert upstream.calls()["chat"] == 1


def _exercise_sdk(sdk: openai.OpenAI) -> None:
    prompt = unique()
    messages = [{"role": "user", "content": prompt}]
    first = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    second = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages, extra_body={"cache": {"s-maxage": 600}}  # type: ignore[arg-type]
    )
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    streamed = sdk.chat.completions.create(model="gpt-4o", messages=messages, stream=True)  # type: ignore[arg-type]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == first.parse().choices[0].message.content
    vectors = sdk.embeddings.create(model="text-embedding-3-small", input=[prompt, "x"])
    assert len(vectors.data) == 2


def test_disk_backend_survives_restart(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream,
                                       tmp_path: Path) -> None:
    params = {"type": "disk", "disk_cache_dir": str(tmp_path / "cache"), "ttl": 600}
    config = gateway_config(stub.url, params)
    stub.reset()
    body = chat(unique())
    gw = make_gateway(config)
    first = httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH)
    gw.stop()
    gw2 = make_gateway(config)
    second = httpx.post(gw2.url + "/chat/completions", json=body, headers=AUTH)
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.json() == first.json()
    assert stub.calls()["chat"] == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reprise.cli.main", *args], capture_output=True,
                          text=True, timeout=30)


def test_bad_config_refuses_to_start_naming_the_key(tmp_path: Path, stub: StubUpstream) -> None:
    config = gateway_config(stub.url, {"type": "local", "ttl": "soon"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("serve", "--config", str(path), "--port", "0")
    assert result.returncode == 2
    assert "litellm_settings.cache_params.ttl" in result.stderr


def test_unknown_keys_are_warned_by_name(make_gateway: Callable[..., GatewayProcess],
                                         stub: StubUpstream, tmp_path: Path) -> None:
    config = gateway_config(stub.url)
    config["router_settings"] = {"routing_strategy": "simple-shuffle"}
    config["litellm_settings"]["success_callback"] = ["langfuse"]
    gw = make_gateway(config)
    assert "router_settings" in gw.log
    assert "litellm_settings.success_callback" in gw.log
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    check = run_cli("config", "check", "--config", str(path))
    assert check.returncode == 0
    assert "router_settings" in check.stdout


def test_environment_references_are_resolved(make_gateway: Callable[..., GatewayProcess],
                                             stub: StubUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPRISE_TEST_UPSTREAM_KEY", "sk-from-env")
    config = gateway_config(stub.url)
    config["model_list"][0]["litellm_params"]["api_key"] = "os.environ/REPRISE_TEST_UPSTREAM_KEY"
    gw = make_gateway(config)
    stub.reset()
    httpx.post(gw.url + "/chat/completions", json=chat(unique()), headers=AUTH)
    last = stub.last_request()
    assert last is not None
    assert last["headers"]["Authorization"] == "Bearer sk-from-env"
