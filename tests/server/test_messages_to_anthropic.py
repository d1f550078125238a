"""``/v1/messages`` and ``/v1/messages/count_tokens`` in front of ``anthropic/<model>`` deployments, with
the official ``anthropic`` SDK as the client and the Anthropic stand-in (tests/support/anthropic_standin.py)
as the provider: Anthropic's format in, the chat path and its cache, the Anthropic adapter, Anthropic,
and back; ``count_tokens`` passed through to Anthropic's own endpoint, never cached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.server.conftest import MASTER_KEY, GatewayProcess, unique
from tests.server.test_anthropic_upstream import anthropic_config
from tests.support.anthropic_standin import AnthropicStandIn, token_count

WEATHER = {"name": "get_weather", "description": "The weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def claude() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn(api_key="anthropic-key") as standin:
        yield standin


@pytest.fixture(scope="module")
def gateway(claude: AnthropicStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(anthropic_config(claude), tmp_path_factory.mktemp("messages-anthropic")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def sdk(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_plain_miss_then_hit_through_anthropic(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    prompt = unique()
    first = sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=user(prompt),
                                                  system="Be brief.", stop_sequences=["END"])
    call = len(claude.requests)
    second = sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=user(prompt),
                                                   system="Be brief.", stop_sequences=["END"])
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    miss, hit = first.parse(), second.parse()
    assert hit.model_dump() == miss.model_dump()
    assert miss.id == f"msg_{call:04d}" and miss.model == "claude-sonnet-4-5" and miss.stop_reason == "end_turn"
    assert [block.model_dump() for block in miss.content] == [
        {"type": "text", "text": f"anthropic claude-sonnet-4-5 answer {call}: {prompt}", "citations": None}]
    assert (miss.usage.input_tokens, miss.usage.output_tokens) == (10 + call, 5)
    assert (miss.usage.cache_read_input_tokens, miss.usage.cache_creation_input_tokens) == (3, 0)
    assert claude.requests[-1] == {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": user(prompt),
                                   "system": [{"type": "text", "text": "Be brief."}], "stop_sequences": ["END"]}
    assert len(claude.requests) == call and claude.rejected == []


def test_streamed_miss_then_streamed_hit_then_plain(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    messages = user(unique())
    finals = []
    for expected in ("miss", "hit"):
        with sdk.messages.stream(model="claude", max_tokens=64, messages=messages) as stream:
            assert stream.response.headers["x-reprise-cache"] == expected
            text = "".join(stream.text_stream)
            finals.append(stream.get_final_message())
        assert finals[-1].content[0].type == "text" and finals[-1].content[0].text == text
    call = len(claude.requests)
    assert claude.requests[-1] == {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": messages,
                                   "stream": True}  # nothing of the gateway's usage ask reaches Anthropic
    assert finals[0].model_dump() == finals[1].model_dump()
    assert finals[0].id == f"msg_{call:04d}" and finals[0].stop_reason == "end_turn"
    assert (finals[0].usage.input_tokens, finals[0].usage.output_tokens) == (10 + call, 5)
    assert finals[0].usage.cache_read_input_tokens == 3
    plain = sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=messages)
    assert plain.headers["x-reprise-cache"] == "hit" and plain.parse().model_dump() == finals[0].model_dump()
    assert len(claude.requests) == call and claude.rejected == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_paused_turn_comes_back_as_pause_turn_and_is_never_stored(sdk: anthropic.Anthropic,
                                                                    claude: AnthropicStandIn, stream: bool) -> None:
    """pause_turn asks the client to send the turn back to continue it: it must see the reason."""
    model, messages = "anthropic/claude-stops-pause_turn", user(unique())
    before = len(claude.requests)
    for _ in range(2):
        if stream:
            with sdk.messages.stream(model=model, max_tokens=64, messages=messages) as streamed:
                message = streamed.get_final_message()
        else:
            message = sdk.messages.create(model=model, max_tokens=64, messages=messages)
        assert message.stop_reason == "pause_turn"
    assert len(claude.requests) - before == 2 and claude.rejected == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_thinking_block_is_not_translated_so_the_answer_is_never_stored(sdk: anthropic.Anthropic,
                                                                          claude: AnthropicStandIn,
                                                                          stream: bool) -> None:
    """The chat form has no place for a signed thinking block: the text is sent, nothing is stored."""
    model, messages = "anthropic/claude-thinks", user(unique())
    before = len(claude.requests)
    for call in range(2):
        if stream:
            with sdk.messages.stream(model=model, max_tokens=64, messages=messages) as streamed:
                assert streamed.response.headers["x-reprise-cache"] == "miss"
                message = streamed.get_final_message()
        else:
            raw = sdk.messages.with_raw_response.create(model=model, max_tokens=64, messages=messages)
            assert raw.headers["x-reprise-cache"] == "miss"
            message = raw.parse()
        assert [block.type for block in message.content] == ["text"] and message.stop_reason == "end_turn"
        assert message.id == f"msg_{before + call + 1:04d}"
    assert len(claude.requests) - before == 2 and claude.rejected == []


def test_tool_use_streamed_then_plain(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    messages = user(unique("weather in Paris?"))
    with sdk.messages.stream(model="claude", max_tokens=64, messages=messages,
                             tools=[WEATHER], tool_choice={"type": "any"}) as stream:  # type: ignore[list-item]
        streamed = stream.get_final_message()
    call = len(claude.requests)
    assert claude.requests[-1]["tools"] == [WEATHER] and claude.requests[-1]["tool_choice"] == {"type": "any"}
    assert streamed.stop_reason == "tool_use"
    text, use = streamed.content
    assert text.type == "text" and text.text == "Let me check."
    assert use.type == "tool_use" and (use.id, use.name, use.input) == (
        f"toolu_{call:04d}", "get_weather", {"city": "Paris", "call": call})
    plain = sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=messages,
                                                  tools=[WEATHER], tool_choice={"type": "any"})  # type: ignore[list-item]
    assert plain.headers["x-reprise-cache"] == "hit" and plain.parse().model_dump() == streamed.model_dump()
    assert claude.rejected == []


def test_a_strict_tool_reaches_anthropic_strict(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    """Through the chat form (``function.strict``) and back to Anthropic's own ``strict``."""
    messages = user(unique("weather in Paris?"))
    for tool in (WEATHER, {**WEATHER, "strict": True}):
        raw = sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=messages,
                                                    tools=[tool])  # type: ignore[list-item]
        assert raw.headers["x-reprise-cache"] == "miss"
        assert claude.requests[-1]["tools"] == [tool]
    assert claude.rejected == []


def test_anthropic_errors_keep_their_status_and_type(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    for stream in (False, True):
        with pytest.raises(anthropic.RateLimitError) as limited:
            sdk.messages.create(model="claude-limited", max_tokens=16, messages=user(unique()), stream=stream)
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert limited.value.response.headers["x-reprise-cache"] == "miss"


def test_count_tokens_is_anthropics_own_count(sdk: anthropic.Anthropic, claude: AnthropicStandIn) -> None:
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    ask: dict[str, Any] = {"messages": user(unique()), "system": system, "tools": [WEATHER],
                           "tool_choice": {"type": "auto"}, "thinking": {"type": "enabled", "budget_tokens": 2048}}
    before = len(claude.requests)
    counts = []
    for _ in range(2):  # never cached: each count is Anthropic's
        raw = sdk.messages.with_raw_response.count_tokens(model="claude", **ask,
                                                          extra_body={"cache": {"ttl": 60}})
        assert raw.http_response.status_code == 200
        assert raw.headers["request-id"] == f"req_count_{len(claude.counted)}"
        assert "x-reprise-token-count" not in raw.headers and "x-reprise-cache" not in raw.headers
        assert claude.counted[-1] == {"model": "claude-sonnet-4-5", **ask}  # no `cache`, no `max_tokens`
        counts.append(raw.parse().input_tokens)
    assert counts == [token_count(claude.counted[-1])] * 2 and counts[0] > 0
    wildcard = sdk.messages.count_tokens(model="anthropic/claude-opus-4-1", messages=user("hi"))
    assert claude.counted[-1] == {"model": "claude-opus-4-1", "messages": user("hi")}
    assert wildcard.input_tokens == token_count(claude.counted[-1])
    assert len(claude.requests) == before and claude.rejected == []


def test_count_tokens_answers_as_anthropic_sent_them(gateway: GatewayProcess, sdk: anthropic.Anthropic,
                                                    claude: AnthropicStandIn) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk.messages.count_tokens(model="claude-limited", messages=user("hi"))
    assert limited.value.body == {"type": "error", "error": {  # type: ignore[comparison-overlap]
        "type": "rate_limit_error", "message": "Number of requests has exceeded your rate limit"}}
    assert limited.value.response.headers["retry-after"] == "1"
    counted = len(claude.counted)
    refused = httpx.post(gateway.url + "/v1/messages/count_tokens", headers={"x-api-key": MASTER_KEY},
                         json={"model": "claude", "messages": [{"role": "assistant", "content": "hi"}]})
    assert refused.status_code == 400
    assert refused.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "messages: must be a non-empty list starting with a user turn"}}
    assert claude.rejected == ["messages: must be a non-empty list starting with a user turn"]
    claude.rejected.clear()
    with pytest.raises(anthropic.BadRequestError) as gateways:  # the gateway's own check: never forwarded
        sdk.messages.count_tokens(model="claude", messages=user("hi"), extra_body={"max_tokens": 5})
    assert gateways.value.body["error"]["message"] == (  # type: ignore[index]
        "'max_tokens' is not supported by this gateway's /v1/messages")
    assert len(claude.counted) == counted
