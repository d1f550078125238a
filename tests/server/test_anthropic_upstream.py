"""``anthropic/<model>`` models (issue 14 item 1) through ``reprise serve`` against a stand-in that
speaks only Anthropic's Messages API (tests/support/anthropic_standin.py), with the official
``openai`` SDK as the client: the gateway keeps OpenAI's form in and out, the adapter
translates; plain and streamed answers are stored and replayed, tool calls both ways,
provider errors and broken streams are never stored, what Anthropic cannot take is a 400."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.server.test_sdk_and_config import run_cli
from tests.support.anthropic_standin import AnthropicStandIn

TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Weather of a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def claude() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn(api_key="anthropic-key") as standin:
        yield standin


def anthropic_config(claude: AnthropicStandIn) -> dict[str, Any]:
    def entry(name: str, model: str, base: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"anthropic/{model}", "api_base": base,
                                                        "api_key": "anthropic-key"}}
    return {
        "model_list": [entry("claude", "claude-sonnet-4-5", claude.url),
                       entry("claude-full-url", "claude-haiku-4-5", claude.url + "/v1/messages"),
                       *(entry(m, m, claude.url) for m in ("claude-limited", "claude-overloaded", "claude-cut",
                                                            "claude-error-mid")),
                       entry("anthropic/*", "*", claude.url)],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}},
    }


@pytest.fixture(scope="module")
def sdk(claude: AnthropicStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    gw = GatewayProcess(anthropic_config(claude), tmp_path_factory.mktemp("anthropic")).start()
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
        yield client
    gw.stop()


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def streamed(sdk: openai.OpenAI, model: str, messages: list[dict[str, Any]], **extra: Any) -> list[Any]:
    stream = sdk.chat.completions.create(model=model, messages=messages, stream=True, **extra)  # type: ignore[call-overload]
    return list(stream)


def test_miss_then_hit_is_the_same_answer_byte_for_byte(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    before = len(claude.requests)
    prompt = unique()
    first = sdk.chat.completions.with_raw_response.create(model="claude", messages=user(prompt))  # type: ignore[arg-type]
    second = sdk.chat.completions.with_raw_response.create(model="claude", messages=user(prompt))  # type: ignore[arg-type]
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.http_response.content == first.http_response.content
    answer = first.parse()
    call = before + 1
    assert answer.id == f"msg_{call:04d}" and answer.object == "chat.completion"
    assert answer.choices[0].message.content == f"anthropic claude-sonnet-4-5 answer {call}: {prompt}"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 10 + call, "completion_tokens": 5, "total_tokens": 15 + call,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3}
    assert claude.requests[before:] == [{"model": "claude-sonnet-4-5", "messages": user(prompt), "max_tokens": 4096}]
    assert claude.rejected == []


def test_provider_headers_pass_on_a_miss_and_never_replay(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    messages = user(unique())
    miss = sdk.chat.completions.with_raw_response.create(model="claude", messages=messages)  # type: ignore[arg-type]
    call = len(claude.requests)
    hit = sdk.chat.completions.with_raw_response.create(model="claude", messages=messages)  # type: ignore[arg-type]
    assert miss.headers["request-id"] == f"req_{call}"
    assert miss.headers["anthropic-ratelimit-requests-remaining"] == str(1000 - call)
    assert hit.headers["x-reprise-cache"] == "hit"
    assert "request-id" not in hit.headers and "anthropic-ratelimit-requests-remaining" not in hit.headers


def test_system_parameters_and_image_parts_are_translated(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    prompt = unique("describe")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use French."},
                {"role": "user", "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]}]
    sdk.chat.completions.create(model="claude", messages=messages, max_completion_tokens=50,  # type: ignore[arg-type]
                                temperature=0.5, top_p=0.9, stop="END", user="alice")
    assert claude.rejected == []
    assert claude.requests[-1] == {
        "model": "claude-sonnet-4-5", "max_tokens": 50, "temperature": 0.5, "top_p": 0.9,
        "stop_sequences": ["END"], "metadata": {"user_id": "alice"},
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": prompt},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]}]}


def test_streamed_miss_then_streamed_hit_and_plain_hit(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    before = len(claude.requests)
    messages = user(unique())
    first = streamed(sdk, "claude", messages)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in first if chunk.choices)
    assert text == f"anthropic claude-sonnet-4-5 answer {before + 1}: {messages[0]['content']}"
    assert [c.choices[0].finish_reason for c in first if c.choices][-1] == "stop"
    assert {c.id for c in first} == {f"msg_{before + 1:04d}"}
    assert not any(chunk.usage for chunk in first)  # the client did not ask for the usage chunk
    replay = streamed(sdk, "claude", messages)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in replay if chunk.choices) == text
    plain = sdk.chat.completions.with_raw_response.create(model="claude", messages=messages)  # type: ignore[arg-type]
    assert plain.headers["x-reprise-cache"] == "hit"
    answer = plain.parse()
    assert answer.choices[0].message.content == text and answer.id == f"msg_{before + 1:04d}"
    assert answer.usage is not None and answer.usage.prompt_tokens == 11 + before  # kept although not asked
    assert answer.usage.completion_tokens == 5
    assert len(claude.requests) - before == 1
    assert claude.requests[-1]["stream"] is True and "stream_options" not in claude.requests[-1]


def test_a_stream_that_asks_for_usage_gets_the_usage_chunk(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    messages = user(unique())
    for _ in range(2):  # the miss, then its replay
        chunks = streamed(sdk, "claude", messages, stream_options={"include_usage": True})
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.total_tokens > 5


def test_tool_calls_plain(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    answer = sdk.chat.completions.create(model="claude", messages=user(unique("weather?")), tools=TOOLS,  # type: ignore[arg-type]
                                         tool_choice="required", parallel_tool_calls=False)
    sent = claude.requests[-1]
    assert sent["tools"] == [{"name": "weather", "description": "Weather of a city",
                              "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id == f"toolu_{len(claude.requests):04d}" and call.type == "function"
    assert call.function.name == "weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris", "call": len(claude.requests)}  # type: ignore[union-attr]


def test_tool_calls_streamed_then_replayed_plain(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    before = len(claude.requests)
    messages = user(unique("weather?"))
    chunks = streamed(sdk, "claude", messages, tools=TOOLS,
                      tool_choice={"type": "function", "function": {"name": "weather"}})
    assert claude.requests[-1]["tool_choice"] == {"type": "tool", "name": "weather"}
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].index == 0 and calls[0].id == f"toolu_{before + 1:04d}"
    assert calls[0].function is not None and calls[0].function.name == "weather"
    arguments = "".join(call.function.arguments or "" for call in calls if call.function)
    assert json.loads(arguments) == {"city": "Paris", "call": before + 1}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    plain = sdk.chat.completions.create(model="claude", messages=messages, tools=TOOLS,  # type: ignore[arg-type]
                                        tool_choice={"type": "function", "function": {"name": "weather"}})
    call = plain.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.arguments == arguments  # type: ignore[union-attr]
    assert plain.choices[0].message.content == "Let me check."
    assert len(claude.requests) - before == 1


def test_tool_results_go_back_as_one_user_turn(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    prompt = unique("two cities")
    messages = [*user(prompt),
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "toolu_a", "type": "function",
                     "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "toolu_b", "type": "function",
                     "function": {"name": "weather", "arguments": '{"city":"Rome"}'}}]},
                {"role": "tool", "tool_call_id": "toolu_a", "content": "cold"},
                {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "warm"}]}]
    sdk.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="none")  # type: ignore[arg-type]
    assert claude.rejected == []
    sent = claude.requests[-1]
    assert sent["tool_choice"] == {"type": "none"}
    assert sent["messages"] == [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Rome"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "cold"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": [{"type": "text", "text": "warm"}]}]}]


def test_provider_errors_are_passed_on_as_openai_errors_and_not_cached(sdk: openai.OpenAI,
                                                                       claude: AnthropicStandIn) -> None:
    before = len(claude.requests)
    messages = user(unique())
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as limited:
            sdk.chat.completions.create(model="claude-limited", messages=messages)  # type: ignore[arg-type]
        assert limited.value.response.headers["retry-after"] == "1"
        assert limited.value.response.json() == {"error": {
            "message": "Number of requests has exceeded your rate limit", "type": "rate_limit_error",
            "param": None, "code": "rate_limit_error"}}
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as overloaded:
            streamed(sdk, "claude-overloaded", messages)
        assert overloaded.value.status_code == 529
        assert overloaded.value.response.json()["error"]["type"] == "overloaded_error"
    assert len(claude.requests) - before == 4


@pytest.mark.parametrize("model", ["claude-cut", "claude-error-mid"])
def test_a_stream_that_breaks_before_message_stop_is_not_stored(sdk: openai.OpenAI, claude: AnthropicStandIn,
                                                               model: str) -> None:
    before = len(claude.requests)
    messages = user(unique())
    for _ in range(2):
        with pytest.raises(openai.APIError) as broken:
            streamed(sdk, model, messages)
        assert "stream" in str(broken.value)
    plain = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)  # type: ignore[arg-type]
    assert plain.headers["x-reprise-cache"] == "miss"  # the broken streams stored nothing
    assert len(claude.requests) - before == 3


def test_a_full_context_window_is_length_as_max_tokens_is(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    """The answer was cut where the provider stopped, as with max_tokens: whole and stored, as "length"."""
    before, finish = len(claude.requests), "length"
    model, messages = "anthropic/claude-stops-model_context_window_exceeded", user(unique())
    chunks = streamed(sdk, model, messages)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish
    plain = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)  # type: ignore[arg-type]
    assert plain.headers["x-reprise-cache"] == "hit" and plain.parse().choices[0].finish_reason == finish
    assert len(claude.requests) - before == 1


@pytest.mark.parametrize("reason", ["pause_turn", "a_reason_added_later"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_reason_that_is_no_whole_answer_is_sent_as_it_is_and_never_stored(
        sdk: openai.OpenAI, claude: AnthropicStandIn, reason: str, stream: bool) -> None:
    before = len(claude.requests)
    model, messages = f"anthropic/claude-stops-{reason}", user(unique())
    for _ in range(2):
        if stream:
            last = [c for c in streamed(sdk, model, messages) if c.choices][-1].choices[0]
        else:
            answer = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)  # type: ignore[arg-type]
            assert answer.headers["x-reprise-cache"] == "miss"
            last = answer.parse().choices[0]
            assert (last.message.content or "").startswith(f"anthropic claude-stops-{reason} answer")
        assert last.finish_reason is None and last.model_extra == {"anthropic_stop_reason": reason}
    assert len(claude.requests) - before == 2  # neither answer was stored


@pytest.mark.parametrize(("model", "plain_lost", "streamed_lost"), [
    ("claude-thinks", ["thinking"], ["thinking"]),
    ("claude-cites", ["text.citations"], ["citations_delta"]),
])
@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_with_what_the_translation_has_no_place_for_is_sent_and_never_stored(
        sdk: openai.OpenAI, claude: AnthropicStandIn, model: str, plain_lost: list[str], streamed_lost: list[str],
        stream: bool) -> None:
    """A thinking block, a text block's citations: the client gets the text and is told what it did
    not get; a hit would be a part of the provider's answer, so there is none."""
    before = len(claude.requests)
    model, messages = f"anthropic/{model}", user(unique())
    for call in range(2):
        if stream:
            last = [c for c in streamed(sdk, model, messages) if c.choices][-1].choices[0]
            assert last.finish_reason == "stop" and last.model_extra == {"anthropic_untranslated": streamed_lost}
        else:
            answer = sdk.chat.completions.with_raw_response.create(model=model, messages=messages)  # type: ignore[arg-type]
            assert answer.headers["x-reprise-cache"] == "miss"
            choice = answer.parse().choices[0]
            assert choice.message.content == f"anthropic {model.split('/')[1]} answer {before + call + 1}: " \
                                             f"{messages[0]['content']}"
            assert choice.finish_reason == "stop" and choice.model_extra == {"anthropic_untranslated": plain_lost}
    assert len(claude.requests) - before == 2  # neither answer was stored
    assert claude.rejected == []


@pytest.mark.parametrize(("extra", "param"), [
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
])
def test_what_anthropic_cannot_take_is_a_400_naming_it(sdk: openai.OpenAI, claude: AnthropicStandIn,
                                                       extra: dict[str, Any], param: str) -> None:
    before = len(claude.requests)
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model="claude", messages=user(unique()), stream=stream, **extra)  # type: ignore[call-overload]
        error = refused.value.response.json()["error"]
        assert error["param"] == param and param in error["message"]
    assert len(claude.requests) == before


def test_embeddings_to_an_anthropic_model_are_a_400(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    before = len(claude.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="claude", input=["a", "b"])
    assert "no embeddings API" in refused.value.response.json()["error"]["message"]
    assert len(claude.requests) == before


def test_an_api_base_that_already_ends_in_v1_messages(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    answer = sdk.chat.completions.create(model="claude-full-url", messages=user(unique()))  # type: ignore[arg-type]
    assert (answer.choices[0].message.content or "").startswith("anthropic claude-haiku-4-5 answer")
    assert claude.rejected == []


def test_a_wildcard_entry_sends_the_name_asked_for(sdk: openai.OpenAI, claude: AnthropicStandIn) -> None:
    prompt = unique()
    for _ in range(2):
        answer = sdk.chat.completions.with_raw_response.create(model="anthropic/claude-opus-4-1",  # type: ignore[arg-type]
                                                                messages=user(prompt))
    assert answer.headers["x-reprise-cache"] == "hit"
    assert claude.requests[-1]["model"] == "claude-opus-4-1" and claude.requests[-1]["messages"] == user(prompt)


def test_the_key_comes_from_anthropic_api_key_or_start_is_refused(
        claude: AnthropicStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    config = {"model_list": [{"model_name": "c", "litellm_params": {"model": "anthropic/claude-x",
                                                                    "api_base": claude.url}}],
              "general_settings": {"master_key": MASTER_KEY}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    for result in (run_cli("config", "check", "--config", str(path)),
                   run_cli("serve", "--config", str(path), "--port", "0")):
        assert result.returncode == 2
        assert "model_list[0].litellm_params.api_key" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-key")
    gw = GatewayProcess(config, tmp_path).start()
    try:
        with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as client:
            client.chat.completions.create(model="c", messages=user(unique()))  # type: ignore[arg-type]
    finally:
        gw.stop()
    assert claude.requests[-1]["model"] == "claude-x"
    assert claude.rejected == []
