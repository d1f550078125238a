"""``gemini/`` and ``vertex_ai/`` models (issue 14 item 1) through ``reprise serve`` against
loopback stand-ins for Google's OpenAI-compatible endpoints and OAuth token endpoint
(tests/support/google_standin.py): the paths, the Bearer credential, the model name
sent, miss then hit, streams stored and replayed, embeddings, and start-up refusals."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.server.test_sdk_and_config import run_cli
from tests.support.google_standin import GoogleStandIn, service_account

VERTEX_PREFIX = "/v1/projects/my-proj/locations/europe-west4/endpoints/openapi"


def _config(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"model_list": list(entries), "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}}}


def _client(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0)


def _streamed(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> str:
    stream = client.chat.completions.create(model=model, messages=messages, stream=True)  # type: ignore[arg-type]
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


@pytest.fixture(scope="module")
def gemini() -> Iterator[GoogleStandIn]:
    with GoogleStandIn("/v1beta/openai", api_key="gemini-key") as standin:
        yield standin


def test_gemini_chat_stream_and_embeddings(gemini: GoogleStandIn, make_gateway: Callable[..., GatewayProcess],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")  # LiteLLM's variable, used when api_key is absent
    base = gemini.url + "/v1beta/openai"
    gw = make_gateway(_config(
        {"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.0-flash", "api_base": base}},
        {"model_name": "embed", "litellm_params": {"model": "gemini/text-embedding-004", "api_base": base,
                                                   "api_key": "gemini-key"}}))
    messages = [{"role": "user", "content": unique()}]
    with _client(gw) as client:
        first = client.chat.completions.with_raw_response.create(model="flash", messages=messages)  # type: ignore[arg-type]
        second = client.chat.completions.with_raw_response.create(model="flash", messages=messages)  # type: ignore[arg-type]
        assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
        assert second.text == first.text
        streamed_messages = [{"role": "user", "content": unique()}]
        streamed, replayed = (_streamed(client, "flash", streamed_messages) for _ in range(2))
        assert streamed.startswith("google gemini-2.0-flash answer") and replayed == streamed
        words = [unique("a"), unique("b")]
        vectors = [[d.embedding for d in client.embeddings.create(model="embed", input=words).data] for _ in "ab"]
        assert vectors[0] == vectors[1] == [[0.5, 0.0], [0.5, 0.25]]
    assert [(r["operation"], r["body"]["model"]) for r in gemini.requests[-3:]] == [
        ("chat/completions", "gemini-2.0-flash"), ("chat/completions", "gemini-2.0-flash"),
        ("embeddings", "text-embedding-004")]
    assert gemini.rejected == []


def _refused_alike(config: dict[str, Any], key: str, tmp_path: Path) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    check = run_cli("config", "check", "--config", str(path))
    serve = run_cli("serve", "--config", str(path), "--port", "0")
    assert (check.returncode, serve.returncode) == (2, 2), (check.stderr, serve.stderr)
    assert key in check.stderr and check.stderr.splitlines()[0] == serve.stderr.splitlines()[0]
    return check.stderr


def test_gemini_without_a_key_is_refused_by_check_and_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    config = _config({"model_name": "flash", "litellm_params": {"model": "gemini/gemini-2.0-flash"}})
    assert "GEMINI_API_KEY" in _refused_alike(config, "model_list[0].litellm_params.api_key", tmp_path)


@pytest.fixture(scope="module")
def vertex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GoogleStandIn, Path]]:
    with GoogleStandIn(VERTEX_PREFIX) as standin:
        info, public = service_account(standin.url + "/token")
        standin.public_key = public
        path = tmp_path_factory.mktemp("sa") / "service-account.json"
        path.write_text(json.dumps(info))
        yield standin, path


def test_vertex_gets_a_token_from_the_service_account_and_reuses_it(
        vertex: tuple[GoogleStandIn, Path], make_gateway: Callable[..., GatewayProcess]) -> None:
    standin, credentials = vertex
    gw = make_gateway(_config({"model_name": "flash", "litellm_params": {
        "model": "vertex_ai/gemini-2.0-flash", "api_base": standin.url, "vertex_project": "my-proj",
        "vertex_location": "europe-west4", "vertex_credentials": str(credentials)}}))
    issued = len(standin.tokens_issued)
    messages = [{"role": "user", "content": unique()}]
    with _client(gw) as client:
        first = client.chat.completions.with_raw_response.create(model="flash", messages=messages)  # type: ignore[arg-type]
        second = client.chat.completions.with_raw_response.create(model="flash", messages=messages)  # type: ignore[arg-type]
        other = [{"role": "user", "content": unique()}]
        streamed, replayed = (_streamed(client, "flash", other) for _ in range(2))
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.text == first.text and replayed == streamed
    assert len(standin.tokens_issued) == issued + 1  # one token for both provider calls
    assert [(r["path"], r["body"]["model"], r["token"]) for r in standin.requests[-2:]] == [
        (VERTEX_PREFIX + "/chat/completions", "google/gemini-2.0-flash", standin.tokens_issued[-1])] * 2
    assert standin.rejected == []


def test_vertex_inline_credentials_and_litellm_environment(
        vertex: tuple[GoogleStandIn, Path], make_gateway: Callable[..., GatewayProcess],
        monkeypatch: pytest.MonkeyPatch) -> None:
    standin, credentials = vertex
    monkeypatch.setenv("VERTEXAI_PROJECT", "my-proj")
    monkeypatch.setenv("VERTEXAI_LOCATION", "europe-west4")
    gw = make_gateway(_config({"model_name": "llama", "litellm_params": {
        "model": "vertex_ai/meta/llama-3.3-70b", "api_base": standin.url,
        "vertex_credentials": credentials.read_text()}}))
    with _client(gw) as client:
        client.chat.completions.create(model="llama", messages=[{"role": "user", "content": unique()}])
    assert standin.requests[-1]["body"]["model"] == "meta/llama-3.3-70b"  # a publisher given is kept
    assert standin.requests[-1]["path"] == VERTEX_PREFIX + "/chat/completions"
    assert standin.rejected == []


def test_vertex_refusals_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VERTEXAI_PROJECT", "VERTEX_PROJECT", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    no_project = _config({"model_name": "m", "litellm_params": {"model": "vertex_ai/gemini-2.0-flash"}})
    assert "VERTEXAI_PROJECT" in _refused_alike(no_project, "model_list[0].litellm_params.vertex_project", tmp_path)
    bad = _config({"model_name": "m", "litellm_params": {"model": "vertex_ai/gemini-2.0-flash",
                                                         "vertex_project": "p",
                                                         "vertex_credentials": str(tmp_path / "missing.json")}})
    _refused_alike(bad, "model_list[0].litellm_params.vertex_credentials", tmp_path)


def test_vertex_application_default_credentials(vertex: tuple[GoogleStandIn, Path],
                                                make_gateway: Callable[..., GatewayProcess],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No vertex_credentials: google-auth's Application Default Credentials, here the
    service-account file GOOGLE_APPLICATION_CREDENTIALS names."""
    standin, credentials = vertex
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials))
    issued = len(standin.tokens_issued)
    gw = make_gateway(_config({"model_name": "flash", "litellm_params": {
        "model": "vertex_ai/gemini-2.0-flash", "api_base": standin.url, "vertex_project": "my-proj",
        "vertex_location": "europe-west4"}}))
    with _client(gw) as client:
        client.chat.completions.create(model="flash", messages=[{"role": "user", "content": unique()}])
    assert len(standin.tokens_issued) == issued + 1
    assert standin.requests[-1]["token"] == standin.tokens_issued[-1]
    assert standin.rejected == []


def test_a_catch_all_entry_without_a_gemini_key_answers_404_naming_it(
        make_gateway: Callable[..., GatewayProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    gw = make_gateway(_config({"model_name": "*", "litellm_params": {"model": "*"}}))
    with _client(gw) as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gemini/gemini-2.0-flash", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found" and "GEMINI_API_KEY" in caught.value.message
