"""Providers with no native adapter, through the LiteLLM SDK (the ``litellm`` extra; issue 14
item 1): ``cohere_chat/`` and ``cohere/`` entries through ``reprise serve`` against a loopback
stand-in for Cohere's v2 API (tests/support/cohere_standin.py), which LiteLLM reaches with
its own HTTP code. Answers come back as OpenAI JSON / chat.completion.chunk SSE and are
cached like any other; provider errors are not; LiteLLM reaches no network; without the
extra, check and serve refuse alike naming the provider, its models and the pip line."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.support.cohere_standin import CohereStandIn

# Located, never imported here: importing litellm in the test process would fetch its price map.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None,
                                reason="the litellm extra is not installed: pip install 'reprise[litellm]'")


class ProxyRecorder:
    """An HTTP(S) proxy that forwards nothing: it records the request line of every connection
    a client opens through it (``CONNECT host:443`` for HTTPS) and answers 502."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _record(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        self.seen.append(line.decode(errors="replace").strip())
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._record, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def __enter__(self) -> ProxyRecorder:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def cohere() -> Iterator[CohereStandIn]:
    with CohereStandIn(api_key="co-key") as standin:
        yield standin


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyRecorder]:
    with ProxyRecorder() as recorder:
        yield recorder


def cohere_config(cohere: CohereStandIn) -> dict[str, Any]:
    def entry(name: str, model: str, path: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": model, "api_base": cohere.url + path,
                                                        "api_key": "co-key", "rpm": 100}}
    return {"model_list": [entry("command", "cohere_chat/command-r", "/v2/chat"),
                           entry("busy", "cohere_chat/overloaded", "/v2/chat"),
                           entry("embed", "cohere/embed-english-v3.0", "/v2/embed"),
                           entry("cut", "cohere_chat/cut", "/v2/chat"),
                           entry("cohere_chat/*", "cohere_chat/*", "/v2/chat"),
                           entry("tuned", "cohere_chat/command-r", "/v2/chat") | {"litellm_params": {
                               "model": "cohere_chat/command-r", "api_base": cohere.url + "/v2/chat",
                               "api_key": "co-key", "temperature": 0.9, "organization": "org-1"}},
                           entry("lenient", "cohere_chat/command-r", "/v2/chat") | {"litellm_params": {
                               "model": "cohere_chat/command-r", "api_base": cohere.url + "/v2/chat",
                               "api_key": "co-key", "drop_params": True}}],
            "general_settings": {"master_key": MASTER_KEY},
            "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}}}


@pytest.fixture(scope="module")
def sdk(cohere: CohereStandIn, proxy: ProxyRecorder, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[openai.OpenAI]:
    mp = pytest.MonkeyPatch()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        mp.setenv(name, f"http://127.0.0.1:{proxy.port}")  # anything LiteLLM sends off-loopback lands here
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("no_proxy", "127.0.0.1,localhost")
    mp.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)  # Reprise must set it itself
    gw = GatewayProcess(cohere_config(cohere), tmp_path_factory.mktemp("sdk")).start(timeout=60)
    mp.undo()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30) as client:
        yield client
    gw.stop()


def test_chat_miss_then_hit_in_openai_shape(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    messages = [{"role": "user", "content": unique()}]
    first = sdk.chat.completions.with_raw_response.create(model="command", messages=messages,  # type: ignore[arg-type]
                                                          temperature=0.25)
    second = sdk.chat.completions.with_raw_response.create(model="command", messages=messages,  # type: ignore[arg-type]
                                                           temperature=0.25)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.text == first.text
    answer = first.parse()
    assert answer.object == "chat.completion" and answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content == f"cohere command-r answer {before + 1}"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 4)
    sent = cohere.requests[before:]
    assert len(sent) == 1 and sent[0]["body"]["temperature"] == 0.25
    assert "rpm" not in sent[0]["body"]  # router-only keys stay in Reprise
    assert cohere.rejected == []


def test_stream_is_stored_and_replayed_and_serves_the_plain_request(sdk: openai.OpenAI,
                                                                    cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    messages = [{"role": "user", "content": unique()}]

    def text() -> str:
        stream = sdk.chat.completions.create(model="command", messages=messages, stream=True)  # type: ignore[arg-type]
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    first, replayed = text(), text()
    assert first == f"cohere command-r answer {before + 1} " and replayed == first
    plain = sdk.chat.completions.with_raw_response.create(model="command", messages=messages)  # type: ignore[arg-type]
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.parse().choices[0].message.content == first
    assert len(cohere.requests) - before == 1 and cohere.requests[-1]["body"]["stream"] is True


def test_embeddings_miss_then_hit(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    words = [unique("a"), unique("bb")]
    first = sdk.embeddings.create(model="embed", input=words)
    second = sdk.embeddings.create(model="embed", input=words)
    assert [d.embedding for d in first.data] == [d.embedding for d in second.data] == [
        [float(len(w)), 0.5] for w in words]
    assert [r["path"] for r in cohere.requests[before:]] == ["/v2/embed"]


def test_provider_errors_keep_their_status_and_are_not_cached(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    messages = [{"role": "user", "content": unique()}]
    for stream in (False, False, True):
        with pytest.raises(openai.RateLimitError):
            sdk.chat.completions.create(model="busy", messages=messages, stream=stream)  # type: ignore[call-overload]
    assert len(cohere.requests) - before == 3


def test_litellm_reached_no_network(sdk: openai.OpenAI, proxy: ProxyRecorder) -> None:
    sdk.chat.completions.create(model="command", messages=[{"role": "user", "content": unique()}])
    assert proxy.seen == []


def test_without_the_extra_check_and_serve_refuse_naming_provider_models_and_extra(
        cohere: CohereStandIn, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cohere_config(cohere)))
    hide = "import sys; sys.modules['litellm'] = None; from reprise.cli.main import main; sys.exit(main(sys.argv[1:]))"
    results = [subprocess.run([sys.executable, "-c", hide, *args, "--config", str(path)], capture_output=True,
                              text=True, timeout=60) for args in (["config", "check"], ["serve", "--port", "0"])]
    assert [r.returncode for r in results] == [2, 2]
    first = results[0].stderr.splitlines()[0]
    assert first == results[1].stderr.splitlines()[0]
    for needed in ("model_list[0].litellm_params.model", "pip install 'reprise[litellm]'",
                   "'cohere_chat' (models: command, busy, cut, cohere_chat/*, tuned, lenient)"):
        assert needed in results[0].stderr
    assert "'cohere' (models: embed)" in results[0].stderr


def test_an_unknown_provider_is_refused_by_name(tmp_path: Path) -> None:
    config = {"model_list": [{"model_name": "m", "litellm_params": {"model": "no_such_provider/x"}}],
              "general_settings": {"master_key": MASTER_KEY}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "reprise.cli.main", "config", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "'no_such_provider' (models: m) is not a LiteLLM provider" in result.stderr
    assert "model_list[0].litellm_params.model" in result.stderr


def test_a_wildcard_entry_reaches_the_named_model(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    messages = [{"role": "user", "content": unique()}]
    answer = sdk.chat.completions.create(model="cohere_chat/command-a", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == f"cohere command-a answer {len(cohere.requests)}"
    assert cohere.requests[-1]["body"]["model"] == "command-a"


def test_request_params_set_on_the_entry_are_not_sent(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    """LiteLLM would send an entry's temperature; the cache key would not cover it, so Reprise does not."""
    sdk.chat.completions.create(model="tuned", messages=[{"role": "user", "content": unique()}])
    assert "temperature" not in cohere.requests[-1]["body"]


def test_config_check_says_which_keys_go_to_the_sdk(cohere: CohereStandIn, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cohere_config(cohere)))
    result = subprocess.run([sys.executable, "-m", "reprise.cli.main", "config", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not [line for line in lines if "litellm_params.organization" in line]  # read (and passed on), not ignored
    assert "warning: model_list[5].litellm_params.temperature is not used by Reprise (ignored)" in lines
    assert "warning: model_list[0].litellm_params.rpm is not used by Reprise (ignored)" in lines


def test_a_stream_cut_by_the_provider_is_not_stored(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    messages = [{"role": "user", "content": unique()}]
    for _ in range(2):
        stream = sdk.chat.completions.create(model="cut", messages=messages, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError):  # the gateway ends the SSE with an error event, no [DONE]
            for _chunk in stream:
                pass
    assert len(cohere.requests) - before == 2  # asked again: the cut answer was not cached


def test_a_client_cannot_pass_sdk_controls(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    """LiteLLM's keyword arguments include where and how to call; a client chooses none of them."""
    before = len(cohere.requests)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(  # type: ignore[call-overload]
                model="command", messages=[{"role": "user", "content": unique()}], stream=stream,
                extra_body={"aws_bedrock_runtime_endpoint": "http://evil"})
        assert caught.value.code == "unsupported_parameter"
        assert "'aws_bedrock_runtime_endpoint'" in caught.value.message
    assert len(cohere.requests) == before


def test_unsupported_params_are_refused_unless_drop_params(sdk: openai.OpenAI, cohere: CohereStandIn) -> None:
    before = len(cohere.requests)
    messages = [{"role": "user", "content": unique()}]
    for _ in range(2):
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model="command", messages=messages, logit_bias={"1": 2})  # type: ignore[arg-type]
        assert "logit_bias" in caught.value.message
    assert len(cohere.requests) == before  # LiteLLM refused before calling
    first = sdk.chat.completions.with_raw_response.create(model="lenient", messages=messages,  # type: ignore[arg-type]
                                                          logit_bias={"1": 2})
    again = sdk.chat.completions.with_raw_response.create(model="lenient", messages=messages,  # type: ignore[arg-type]
                                                          logit_bias={"1": 2})
    assert (first.headers["x-reprise-cache"], again.headers["x-reprise-cache"]) == ("miss", "hit")
    assert "logit_bias" not in cohere.requests[-1]["body"] and len(cohere.requests) == before + 1


def test_an_unset_variable_in_a_key_passed_to_the_sdk_is_refused(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPRISE_TEST_UNSET_REGION", raising=False)
    config = {"model_list": [{"model_name": "claude", "litellm_params": {
        "model": "bedrock/anthropic.claude-v2", "aws_region_name": "os.environ/REPRISE_TEST_UNSET_REGION"}}],
        "general_settings": {"master_key": MASTER_KEY}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "reprise.cli.main", "config", "check", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "model_list[0].litellm_params.aws_region_name: environment variable 'REPRISE_TEST_UNSET_REGION' " \
           "is not set" in result.stderr
