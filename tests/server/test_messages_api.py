"""``POST /v1/messages`` (issue 14 item 2): the official ``anthropic`` SDK pointed at a real gateway
whose provider is the OpenAI-compatible stand-in. Cached with the chat path's keys, controls,
headers and replay; answers and errors in Anthropic's shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream

WEATHER = {"name": "get_weather", "description": "The weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture()
def sdk(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_plain_miss_then_hit(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    messages = user(unique())
    first = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=64, messages=messages)
    second = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=64, messages=messages)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert first.headers["x-litellm-cache-key"] == second.headers["x-litellm-cache-key"]
    miss, hit = first.parse(), second.parse()
    assert hit.model_dump() == miss.model_dump()
    assert miss.type == "message" and miss.role == "assistant" and miss.stop_reason == "end_turn"
    assert miss.content[0].type == "text" and miss.content[0].text.startswith("echo: " + messages[0]["content"])
    assert miss.usage.input_tokens > 0 and miss.usage.output_tokens > 0
    assert upstream.calls()["chat"] == 1
    sent = upstream.last_request()
    assert sent is not None and sent["body"]["max_tokens"] == 64
    assert sent["body"]["messages"] == [{"role": "user", "content": messages[0]["content"]}]


def test_streamed_miss_then_streamed_hit_then_plain(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    messages = user(unique("stream me"))
    finals = []
    for expected in ("miss", "hit"):
        with sdk.messages.stream(model="gpt-4o", max_tokens=64, messages=messages) as stream:
            assert stream.response.headers["x-reprise-cache"] == expected
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == text
        finals.append(final)
    assert finals[0].model_dump() == finals[1].model_dump()
    assert finals[0].stop_reason == "end_turn" and finals[0].usage.output_tokens > 0
    assert finals[0].usage.input_tokens > 0  # from message_delta: the provider sends usage last
    plain = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=64, messages=messages)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.parse().model_dump() == finals[0].model_dump()
    assert upstream.calls()["chat"] == 1


def test_raw_stream_events_are_anthropics_sequence(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    messages = user(unique())
    plain = sdk.messages.create(model="gpt-4o", max_tokens=64, messages=messages)
    events = list(sdk.messages.create(model="gpt-4o", max_tokens=64, messages=messages, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta"
                   and e.delta.type == "text_delta") == plain.content[0].text  # type: ignore[union-attr]
    assert upstream.calls()["chat"] == 1


def test_tool_use_round_trip(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    ask = unique("call tool for Paris")
    first = sdk.messages.create(model="gpt-4o", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                                tool_choice={"type": "tool", "name": "get_weather"}, messages=user(ask))
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.input["query"] == ask  # type: ignore[index]
    sent = upstream.last_request()
    assert sent is not None
    assert sent["body"]["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": WEATHER["description"], "parameters": WEATHER["input_schema"]}}]
    assert sent["body"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    with sdk.messages.stream(model="gpt-4o", max_tokens=64, tools=[WEATHER],  # type: ignore[list-item]
                             tool_choice={"type": "tool", "name": "get_weather"}, messages=user(ask)) as stream:
        assert stream.get_final_message().content == first.content  # replayed as input_json_delta
    follow = [*user(ask), {"role": "assistant", "content": first.content},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}]
    second = sdk.messages.create(model="gpt-4o", max_tokens=64, tools=[WEATHER], messages=follow)  # type: ignore[list-item,arg-type]
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    sent = upstream.last_request()
    assert sent is not None
    assert sent["body"]["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call.id, "type": "function", "function": {
            "name": "get_weather", "arguments": orjson.dumps(call.input).decode()}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    assert upstream.calls()["chat"] == 2


def test_a_strict_tool_is_forwarded_as_a_strict_function_under_its_own_key(gateway: GatewayProcess,
                                                                         upstream: StubUpstream) -> None:
    messages = user(unique("call tool for Paris"))
    replies = []
    for tool in (WEATHER, {**WEATHER, "strict": True}):
        reply = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": MASTER_KEY},
                           json={"model": "gpt-4o", "max_tokens": 64, "messages": messages, "tools": [tool]})
        assert reply.status_code == 200 and reply.headers["x-reprise-cache"] == "miss"
        replies.append(reply)
        sent = upstream.last_request()
        assert sent is not None and sent["body"]["tools"][0]["function"].get("strict") == tool.get("strict")
    assert replies[0].headers["x-litellm-cache-key"] != replies[1].headers["x-litellm-cache-key"]
    assert upstream.calls()["chat"] == 2


@pytest.mark.parametrize(("change", "path"), [
    (lambda body: body["tools"][0].update(strict=True, input_examples=[{"city": "Paris"}]), "tools[0].input_examples"),
    (lambda body: body["messages"][0]["content"][0].update(citations=[{"type": "char_location"}]),
     "messages[0].content[0].citations"),
    (lambda body: body["messages"][0]["content"][0].update(x_unknown=1), "messages[0].content[0].x_unknown"),
    (lambda body: body["messages"][0].update(x_msg_field=True), "messages[0].x_msg_field"),
])
def test_a_key_the_translation_would_drop_is_a_400_naming_its_path(gateway: GatewayProcess, upstream: StubUpstream,
                                                                   change: Callable[[dict[str, Any]], None],
                                                                   path: str) -> None:
    body = {"model": "gpt-4o", "max_tokens": 16, "tools": [dict(WEATHER)],
            "messages": [{"role": "user", "content": [{"type": "text", "text": unique()}]}]}
    change(body)
    reply = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": MASTER_KEY}, json=body)
    assert reply.status_code == 400
    assert reply.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": f"'{path}' is not supported by this gateway's /v1/messages"}}
    assert upstream.calls()["chat"] == 0


def test_system_prompt_reaches_the_provider_as_a_system_message(sdk: anthropic.Anthropic,
                                                                upstream: StubUpstream) -> None:
    system = unique("you are terse")
    sdk.messages.create(model="gpt-4o", max_tokens=16, system=system, messages=user("hi"),
                        stop_sequences=["END"], metadata={"user_id": "u-1"},
                        extra_body={"temperature": 0.5})  # the 2.x SDK dropped the sampling arguments
    sent = upstream.last_request()
    assert sent is not None
    body = sent["body"]
    assert body["messages"] == [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    assert (body["stop"], body["temperature"], body["user"]) == (["END"], 0.5, "u-1")
    assert "metadata" not in body and "system" not in body


def test_cache_controls_body_and_header(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    messages = user(unique())
    old = sdk.messages.create(model="gpt-4o", max_tokens=16, messages=messages)
    fresh = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=16, messages=messages,
                                                  extra_body={"cache": {"no-cache": True}})
    assert fresh.headers["x-reprise-cache"] == "bypass"  # as on /chat/completions: read skipped, answer stored
    assert fresh.parse().content != old.content
    again = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=16, messages=messages)
    assert again.headers["x-reprise-cache"] == "hit" and again.parse().content == fresh.parse().content
    header = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=16, messages=messages,
                                                   extra_headers={"Cache-Control": "no-cache"})
    assert header.headers["x-reprise-cache"] == "bypass"
    unstored = user(unique())
    for _ in range(2):
        reply = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=16, messages=unstored,
                                                      extra_body={"cache": {"no-store": True}})
        assert reply.headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 5


def test_shares_entries_with_the_chat_route(gateway: GatewayProcess, sdk: anthropic.Anthropic,
                                            upstream: StubUpstream) -> None:
    prompt = unique()
    openai_form = httpx.post(gateway.url + "/v1/chat/completions", json=chat(prompt, max_tokens=32), headers=AUTH)
    anthropic_form = sdk.messages.with_raw_response.create(model="gpt-4o", max_tokens=32, messages=user(prompt))
    assert anthropic_form.headers["x-reprise-cache"] == "hit"
    assert anthropic_form.headers["x-litellm-cache-key"] == openai_form.headers["x-litellm-cache-key"]
    assert anthropic_form.parse().content[0].text == openai_form.json()["choices"][0]["message"]["content"]  # type: ignore[union-attr]


def test_upstream_error_is_anthropic_shaped_and_not_cached(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    messages = user(unique())
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError) as caught:
            sdk.messages.create(model="fail-500", max_tokens=16, messages=messages)
        assert caught.value.status_code == 500
        assert caught.value.body["type"] == "error"  # type: ignore[index]
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        assert caught.value.response.headers["x-reprise-cache"] == "miss"
    with pytest.raises(anthropic.RateLimitError) as limited:
        sdk.messages.create(model="fail-429", max_tokens=16, messages=messages, stream=True)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert upstream.calls()["chat"] == 3


def test_bad_body_is_an_anthropic_400(gateway: GatewayProcess, sdk: anthropic.Anthropic,
                                      upstream: StubUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk.messages.create(model="gpt-4o", max_tokens=16, messages=[])
    assert caught.value.body == {"type": "error", "error": {  # type: ignore[comparison-overlap]
        "type": "invalid_request_error", "message": "'messages' must be a non-empty array"}}
    missing = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": MASTER_KEY},
                         json={"model": "gpt-4o", "messages": user("hi")})
    assert missing.status_code == 400 and missing.json()["error"]["type"] == "invalid_request_error"
    not_json = httpx.post(gateway.url + "/messages", headers={"x-api-key": MASTER_KEY}, content=b"{nope")
    assert not_json.status_code == 400 and not_json.json()["type"] == "error"
    assert upstream.calls()["chat"] == 0


def test_auth_and_unknown_model(gateway: GatewayProcess) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model="gpt-4o", max_tokens=16, messages=user("hi"))
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as sdk, \
            pytest.raises(anthropic.NotFoundError) as absent:
        sdk.messages.create(model="claude-nope", max_tokens=16, messages=user("hi"))
    assert absent.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_count_tokens_is_an_estimate_never_cached(sdk: anthropic.Anthropic, upstream: StubUpstream) -> None:
    short = sdk.messages.count_tokens(model="gpt-4o", messages=user("hi"))
    raw = sdk.messages.with_raw_response.count_tokens(model="gpt-4o", system="be brief " * 50,
                                                      messages=user("hi"), tools=[WEATHER])  # type: ignore[list-item]
    longer = raw.parse()
    assert 0 < short.input_tokens < longer.input_tokens
    assert raw.headers["x-reprise-token-count"] == "estimate"
    assert "x-reprise-cache" not in raw.headers
    assert sdk.messages.count_tokens(model="mock", messages=user("hi")).input_tokens == short.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="claude-nope", messages=user("hi"))
    assert upstream.calls()["chat"] == 0


def test_wrong_method_and_version_headers(gateway: GatewayProcess, sdk: anthropic.Anthropic,
                                          upstream: StubUpstream) -> None:
    assert httpx.get(gateway.url + "/v1/messages", headers=AUTH).status_code == 405
    reply = sdk.messages.with_raw_response.create(
        model="gpt-4o", max_tokens=16, messages=user(unique()),
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31", "anthropic-version": "2023-06-01"})
    assert reply.headers["x-reprise-cache"] == "miss"
    sent = upstream.last_request()
    assert sent is not None and not any(name.lower().startswith("anthropic") for name in sent["headers"])


def test_concurrent_identical_streams_call_the_provider_once(gateway: GatewayProcess, upstream: StubUpstream) -> None:
    upstream.set_delay(400)
    messages = user(unique())

    async def many(n: int) -> list[anthropic.types.Message]:
        async with anthropic.AsyncAnthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as client:
            async def one() -> anthropic.types.Message:
                async with client.messages.stream(model="gpt-4o", max_tokens=16, messages=messages) as stream:
                    return await stream.get_final_message()
            return await asyncio.gather(*(one() for _ in range(n)))

    finals = asyncio.run(many(8))
    assert upstream.calls()["chat"] == 1
    assert len({final.model_dump_json() for final in finals}) == 1


def test_a_cut_stream_is_not_stored(gateway: GatewayProcess, upstream: StubUpstream) -> None:
    body = {"model": "cut-stream", "max_tokens": 16, "messages": user(unique()), "stream": True}
    for _ in range(2):
        reply = httpx.post(gateway.url + "/v1/messages", json=body, headers={"x-api-key": MASTER_KEY})
        assert reply.status_code == 200 and reply.headers["x-reprise-cache"] == "miss"
        assert b"event: message_start" in reply.content and b"message_stop" not in reply.content
        assert reply.content.endswith(b"\n\n") and b"event: error\n" in reply.content  # the break, said
    assert upstream.calls()["chat"] == 2


@pytest.mark.parametrize("model", ["function-call", "reasoning", "mock"])
def test_other_answer_shapes_stream_and_replay_alike(sdk: anthropic.Anthropic, upstream: StubUpstream,
                                                    model: str) -> None:
    """Legacy ``function_call``, DeepSeek-style reasoning with unknown fields, a ``mock_response`` model:
    the live stream's final message is the plain hit's."""
    messages = user(unique("call tool"))
    with sdk.messages.stream(model=model, max_tokens=16, messages=messages) as stream:
        streamed = stream.get_final_message()
        assert stream.response.headers["x-reprise-cache"] == "miss"
    plain = sdk.messages.with_raw_response.create(model=model, max_tokens=16, messages=messages)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.parse().model_dump() == streamed.model_dump()
    if model == "function-call":
        (call,) = streamed.content
        assert call.type == "tool_use" and call.input == {"city": "Paris"} and streamed.stop_reason == "tool_use"
    else:
        assert streamed.content[0].type == "text" and streamed.stop_reason == "end_turn"
    assert upstream.calls()["chat"] == (0 if model == "mock" else 1)


def test_a_provider_refusing_stream_options_streams_without_usage(
        make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream) -> None:
    """The gateway asks for the usage chunk as its own choice, not the client's: refused, it asks once
    more without it and remembers the deployment, as on /chat/completions. The events then say 0 tokens
    (the provider reported none), the stored answer has no usage, and a hit is that same message."""
    gateway = make_gateway()  # fresh: its memory of refusing deployments is empty
    model, messages = "reject-stream-options", user(unique())
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as sdk:
        with sdk.messages.stream(model=model, max_tokens=16, messages=messages) as stream:
            assert stream.response.headers["x-reprise-cache"] == "miss"
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == text and text
        assert final.stop_reason == "end_turn"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (0, 0)
        sent = [r["body"] for r in upstream.requests(model=model)]
        assert [("stream_options" in body, body["stream"]) for body in sent] == [(True, True), (False, True)]
        plain = sdk.messages.with_raw_response.create(model=model, max_tokens=16, messages=messages)
        assert plain.headers["x-reprise-cache"] == "hit"
        assert plain.parse().model_dump() == final.model_dump()
        with sdk.messages.stream(model=model, max_tokens=16, messages=user(unique())) as again:
            assert again.get_final_message().content[0].type == "text"
    sent = [r["body"] for r in upstream.requests(model=model)]
    assert len(sent) == 3 and "stream_options" not in sent[2]  # remembered: not asked again


def test_a_stream_asks_for_usage_as_the_gateways_choice(gateway: GatewayProcess, sdk: anthropic.Anthropic,
                                                      upstream: StubUpstream) -> None:
    """Usage is asked for even when nothing is stored (``no-store``), and a stream stored by a
    /chat/completions client that did not ask for usage still replays it to /v1/messages."""
    with sdk.messages.stream(model="gpt-4o", max_tokens=16, messages=user(unique()),
                             extra_body={"cache": {"no-store": True}}) as stream:
        unstored = stream.get_final_message()
    assert unstored.usage.input_tokens > 0 and unstored.usage.output_tokens > 0
    assert upstream.last_request()["body"]["stream_options"] == {"include_usage": True}  # type: ignore[index]
    prompt = unique()
    chat_stream = httpx.post(gateway.url + "/v1/chat/completions", headers=AUTH,
                             json=chat(prompt, max_tokens=16, stream=True))
    assert chat_stream.headers["x-reprise-cache"] == "miss" and b'"usage":{' not in chat_stream.content
    with sdk.messages.stream(model="gpt-4o", max_tokens=16, messages=user(prompt)) as stream:
        assert stream.response.headers["x-reprise-cache"] == "hit"
        replayed = stream.get_final_message()
    assert replayed.usage.input_tokens > 0 and replayed.usage.output_tokens > 0
    assert upstream.calls()["chat"] == 2
