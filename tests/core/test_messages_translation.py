"""Anthropic Messages <-> chat completions, pure: the request translation, the answer, its SSE events."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from reprise.core.keys import chat_key_hash, provider_params
from reprise.core.messages_answer import MessageStream, error_of, message_of
from reprise.core.messages_request import chat_body, count_body, count_request, estimate_tokens
from reprise.core.sse_replay import render_sse
from reprise.errors import RequestError


def anthropic(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}


# -- requests -------------------------------------------------------------------------------


def test_a_plain_request() -> None:
    assert chat_body(anthropic()) == {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_system_string_and_blocks_become_a_first_system_message() -> None:
    as_string = chat_body(anthropic(system="be brief"))
    block = {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}
    as_block = chat_body(anthropic(system=[block]))
    assert as_string["messages"][0] == {"role": "system", "content": "be brief"} == as_block["messages"][0]
    two = chat_body(anthropic(system=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]))
    assert two["messages"][0] == {"role": "system", "content": [{"type": "text", "text": "a"},
                                                                 {"type": "text", "text": "b"}]}


def test_one_text_block_is_the_plain_string_so_one_key() -> None:
    block = anthropic(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert chat_key_hash(chat_body(block)) == chat_key_hash(chat_body(anthropic()))


def test_images_base64_and_url() -> None:
    content = [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
               {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
               {"type": "text", "text": "what is this"}]
    (message,) = chat_body(anthropic(messages=[{"role": "user", "content": content}]))["messages"]
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "what is this"},
    ]


def test_tool_use_and_tool_result() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "let me see"},
                                          {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": False,
                                      "content": [{"type": "text", "text": "sunny"}]},
                                     {"type": "text", "text": "and tomorrow?"}]},
    ]
    assert chat_body(anthropic(messages=messages))["messages"] == [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "let me see", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]


def test_tools_and_tool_choice() -> None:
    tool = {"name": "w", "description": "weather", "input_schema": {"type": "object"}, "cache_control": {"x": 1}}
    body = chat_body(anthropic(tools=[tool], tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert body["tools"] == [{"type": "function", "function": {"name": "w", "description": "weather",
                                                               "parameters": {"type": "object"}}}]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)
    assert chat_body(anthropic(tool_choice={"type": "auto"}))["tool_choice"] == "auto"
    assert chat_body(anthropic(tool_choice={"type": "none"}))["tool_choice"] == "none"
    assert chat_body(anthropic(tool_choice={"type": "tool", "name": "w"}))["tool_choice"] == {
        "type": "function", "function": {"name": "w"}}


def test_sampling_stop_user_and_stream() -> None:
    body = chat_body(anthropic(temperature=1, top_p=0.5, top_k=5, stop_sequences=["X"], stream=True,
                               metadata={"user_id": "u"}, cache={"ttl": 5}))
    assert body == {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}],
                    "temperature": 1, "top_p": 0.5, "top_k": 5, "stop": ["X"], "user": "u", "stream": True,
                    "cache": {"ttl": 5}}  # no stream_options: the usage chunk is the gateway's choice
    assert "cache" not in provider_params(body)  # the controls steer the gateway only
    streamed, plain = chat_body(anthropic(stream=True)), chat_body(anthropic())
    assert chat_key_hash(streamed) == chat_key_hash(plain)  # framing only: one entry, as on /chat/completions


@pytest.mark.parametrize(("extra", "param"), [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"system": 5}, "system"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
    ({"tool_choice": {"type": "maybe"}}, "tool_choice"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
    ({"service_tier": "auto"}, "service_tier"),
    ({"temperature": "hot"}, "temperature"),
    ({"stop_sequences": "X"}, "stop_sequences"),
    ({"metadata": {"user_id": 5}}, "metadata.user_id"),
    ({"stream": "yes"}, "stream"),
    ({"model": ""}, "model"),
])
def test_what_cannot_be_mapped_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        chat_body(anthropic(**extra))
    assert caught.value.param == param


TOOL = {"name": "w", "input_schema": {"type": "object"}}
IMAGE = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [TOOL, {**TOOL, "input_examples": [{"a": "x"}]}]}, "tools[1].input_examples"),
    ({"tools": [{**TOOL, "strict": "yes"}]}, "tools[0].strict"),
    ({"messages": [{"role": "user", "content": "hi", "x_msg_field": True}]}, "messages[0].x_msg_field"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "citations": [{"type": "x"}]}]}]},
     "messages[0].content[0].citations"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "x_unknown": 1}]}]},
     "messages[0].content[0].x_unknown"),
    ({"system": [{"type": "text", "text": "be brief", "x_unknown": 1}]}, "system[0].x_unknown"),
    ({"messages": [{"role": "user", "content": [{**IMAGE, "title": "t"}]}]}, "messages[0].content[0].title"),
    ({"messages": [{"role": "user", "content": [{**IMAGE, "source": {**IMAGE["source"], "x": 1}}]}]},
     "messages[0].content[0].source.x"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "w", "input": {}, "caller": {"type": "direct"}}]}]},
     "messages[1].content[0].caller"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x",
                                                 "x_unknown": 1}]}]}, "messages[0].content[0].x_unknown"),
    ({"tool_choice": {"type": "auto", "name": "w"}}, "tool_choice.name"),
    ({"tool_choice": {"type": "any", "x_unknown": True}}, "tool_choice.x_unknown"),
    ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session"),
])
def test_a_key_the_translation_would_drop_is_refused_by_its_path(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        chat_body(anthropic(**extra))
    assert caught.value.param == param and param in caught.value.message


def test_a_strict_tool_is_a_strict_function_so_its_own_key() -> None:
    strict = chat_body(anthropic(tools=[{**TOOL, "strict": True}]))
    assert strict["tools"] == [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"},
                                                                 "strict": True}}]
    assert chat_key_hash(strict) != chat_key_hash(chat_body(anthropic(tools=[TOOL])))


def test_keys_that_are_null_or_documented_as_dropped_are_accepted() -> None:
    text = {"type": "text", "text": "hi", "citations": None, "cache_control": {"type": "ephemeral"}}
    body = chat_body(anthropic(messages=[{"role": "user", "content": [text], "x_msg_field": None}],
                               tools=[{**TOOL, "strict": None, "cache_control": {"type": "ephemeral"}}]))
    assert body == chat_body(anthropic(tools=[TOOL]))


@pytest.mark.parametrize("empty", [[], {}, ""])
def test_empty_unknown_keys_are_accepted_like_null(empty: object) -> None:
    """Found from outside: ``"citations": []`` (an SDK echoing a block back) was a 400, ``null`` not."""
    text = {"type": "text", "text": "hi", "citations": empty}
    body = chat_body(anthropic(messages=[{"role": "user", "content": [text], "x_msg_field": empty}]))
    assert body == chat_body(anthropic(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]))


def test_disabled_thinking_is_accepted() -> None:
    assert chat_body(anthropic(thinking={"type": "disabled"})) == chat_body(anthropic())


def test_count_body_and_estimate() -> None:
    with pytest.raises(RequestError):
        count_body({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 3})
    small = estimate_tokens(count_body({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    large = estimate_tokens(count_body({"model": "m", "system": "x" * 4000,
                                        "messages": [{"role": "user", "content": "hi"}]}))
    assert 0 < small < large and large >= 1000


def test_count_request_is_the_body_without_gateway_fields() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "document"}]}], "system": None,
            "thinking": {"type": "enabled", "budget_tokens": 2048}, "cache": {"ttl": 5}}
    assert count_request(body) == {"model": "m", "messages": body["messages"], "thinking": body["thinking"]}
    for bad in ({"max_tokens": 3}, {"cache": {"ttl": "x"}}, {"model": None}):
        with pytest.raises(RequestError):
            count_request({**body, **bad})


# -- answers --------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}}


def test_a_text_answer() -> None:
    assert message_of(completion({"content": "hello"})) == {
        "id": "chatcmpl-1", "type": "message", "role": "assistant", "model": "gpt-x",
        "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 7, "output_tokens": 3}}


def test_a_refusal_is_said_as_text_and_ends_as_a_refusal() -> None:
    """Was: ``{"content": [], "stop_reason": "end_turn"}``, indistinguishable from an empty answer."""
    message = message_of(completion({"content": None, "refusal": "I can't help with that."}))
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("refusal", None)


def test_a_tool_answer() -> None:
    message = message_of(completion({"content": None, "tool_calls": [TOOL_CALL]}, "tool_calls"))
    assert message["content"] == [{"type": "tool_use", "id": "call_1", "name": "w", "input": {"city": "Paris"}}]
    assert message["stop_reason"] == "tool_use"


@pytest.mark.parametrize(("finish", "extra", "expected"), [
    ("length", {}, ("max_tokens", None)),
    ("content_filter", {}, ("refusal", None)),
    ("stop", {"stop_reason": "END"}, ("stop_sequence", "END")),  # vLLM names the matched sequence
    ("stop", {"stop_reason": 42}, ("end_turn", None)),  # a stop token id is not a sequence
])
def test_stop_reasons(finish: str, extra: dict[str, Any], expected: tuple[str, str | None]) -> None:
    message = message_of(completion({"content": "x"}, finish, **extra))
    assert (message["stop_reason"], message["stop_sequence"]) == expected


def test_arguments_that_are_not_an_object_are_kept() -> None:
    call = {**TOOL_CALL, "function": {"name": "w", "arguments": "not json"}}
    message = message_of(completion({"content": None, "tool_calls": [call]}, "tool_calls"))
    assert message["content"][0]["input"] == {"arguments": "not json"}


@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error"),
                                              (404, "not_found_error"), (413, "request_too_large"),
                                              (429, "rate_limit_error"), (500, "api_error"), (502, "api_error"),
                                              (503, "overloaded_error"), (504, "timeout_error")])
def test_errors_in_anthropics_shape(status: int, kind: str) -> None:
    openai_error = orjson.dumps({"error": {"message": "no", "type": "x", "param": None, "code": None}})
    assert orjson.loads(error_of(status, openai_error)) == {"type": "error", "error": {"type": kind, "message": "no"}}
    assert orjson.loads(error_of(status, b"<html>"))["error"]["message"] == "<html>"
    anthropics = b'{"type":"error","error":{"type":"billing_error","message":"no credit"},"request_id":"r"}'
    assert error_of(status, anthropics) is anthropics  # Anthropic's own error (count_tokens): as it was sent


def test_usage_keeps_anthropics_cache_counts() -> None:
    answer = completion({"content": "hi"})
    answer["usage"] = {**answer["usage"], "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5}
    usage = {"input_tokens": 7, "output_tokens": 3, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5}
    assert message_of(answer)["usage"] == usage
    assert assemble(MessageStream().feed(render_sse(answer, include_usage=True)))["usage"] == usage


# -- streams --------------------------------------------------------------------------------


def events(sse: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in sse.decode().split("\n\n"):
        if block:
            kind, data = block.split("\n")
            assert kind.startswith("event: ") and data.startswith("data: ")
            payload = json.loads(data[6:])
            assert payload["type"] == kind[7:]
            out.append((kind[7:], payload))
    return out


def assemble(sse: bytes) -> dict[str, Any]:
    """What the Anthropic SDK's stream accumulator makes of the events (the parts this uses)."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for kind, event in events(sse):
        if kind == "message_start":
            message = event["message"]
        elif kind == "content_block_start":
            assert event["index"] == len(message["content"])
            message["content"].append(event["content_block"])
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop":
            if event["index"] in partial:
                message["content"][event["index"]]["input"] = json.loads(partial[event["index"]])
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update(event["usage"])
    return message


@pytest.mark.parametrize("answer", [
    completion({"content": "hello there"}),
    completion({"content": None, "tool_calls": [TOOL_CALL]}, "tool_calls"),
    completion({"content": "first", "tool_calls": [TOOL_CALL, {**TOOL_CALL, "id": "call_2"}]}, "tool_calls"),
    completion({"content": "cut"}, "length"),
    completion({"content": None, "refusal": "I can't help with that."}),
])
def test_a_replayed_stream_assembles_to_the_plain_message(answer: dict[str, Any]) -> None:
    sse = render_sse(answer, include_usage=True)
    whole = MessageStream().feed(sse)
    assert assemble(whole) == message_of(answer)
    stream = MessageStream()  # the same, fed byte by byte
    assert b"".join(stream.feed(sse[i:i + 1]) for i in range(len(sse))) == whole


def test_without_usage_both_counts_are_zero_live_and_replayed() -> None:
    """A provider that refuses ``stream_options`` sends no usage chunk, and its stored answer has no usage."""
    answer = completion({"content": "hello"})
    del answer["usage"]
    for include_usage in (False, True):  # no usage chunk, or one whose usage is null
        message = assemble(MessageStream().feed(render_sse(answer, include_usage)))
        assert message == message_of(answer) and message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_a_live_stream_with_arguments_in_pieces() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": "c", "model": "g", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(body) + b"\r\n\r\n"

    sse = b"".join([
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "a", "type": "function", "function": {"name": "w", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "b", "function": {"name": "v", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        b'data: {"id":"c","model":"g","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n',
        b"data: [DONE]\n\n",
    ])
    assert assemble(MessageStream().feed(sse)) == {
        "id": "c", "type": "message", "role": "assistant", "model": "g", "stop_reason": "tool_use",
        "stop_sequence": None, "usage": {"input_tokens": 4, "output_tokens": 2},
        "content": [{"type": "tool_use", "id": "a", "name": "w", "input": {"city": 1}},
                    {"type": "tool_use", "id": "b", "name": "v", "input": {}}]}


def tool_chunks(*deltas: list[dict[str, Any]]) -> bytes:
    """A chat stream whose chunks carry these ``tool_calls`` deltas, then its end."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body = {"id": "c", "model": "g", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(body) + b"\n\n"
    return b"".join([*(chunk({"tool_calls": calls}) for calls in deltas), chunk({}, "tool_calls"),
                     b"data: [DONE]\n\n"])


def call(index: int, ident: str | None = None, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    function = {"arguments": arguments, **({"name": name} if name else {})}
    return {"index": index, **({"id": ident, "type": "function"} if ident else {}), "function": function}


TWO_CALLS = [{"type": "tool_use", "id": "a", "name": "get_weather", "input": {"city": "Paris"}},
             {"type": "tool_use", "id": "b", "name": "get_time", "input": {"tz": "Europe/Paris"}}]


@pytest.mark.parametrize("deltas", [
    # every call announced first, then each call's arguments
    [[call(0, "a", "get_weather")], [call(1, "b", "get_time")], [call(0, arguments='{"city":')],
     [call(0, arguments='"Paris"}')], [call(1, arguments='{"tz":')], [call(1, arguments='"Europe/Paris"}')]],
    # the calls' fragments interleaved, two in one chunk
    [[call(0, "a", "get_weather", '{"ci'), call(1, "b", "get_time", '{"t')], [call(0, arguments='ty":')],
     [call(1, arguments='z":"Europe')], [call(0, arguments='"Paris"}')], [call(1, arguments='/Paris"}')]],
])
def test_parallel_tool_calls_that_are_not_contiguous_stay_two_blocks(deltas: list[list[dict[str, Any]]]) -> None:
    """Found from outside: a block was opened at every change of index, so these gave four
    blocks (two nameless with the arguments) or one call's JSON split over several blocks."""
    sse = MessageStream().feed(tool_chunks(*deltas))
    assert assemble(sse)["content"] == TWO_CALLS
    starts = [e for kind, e in events(sse) if kind == "content_block_start"]
    assert [e["index"] for e in starts] == [0, 1]


def test_calls_that_all_reuse_index_zero_are_separate_blocks() -> None:
    sse = MessageStream().feed(tool_chunks([call(0, "a", "get_weather", '{"city":"Paris"}')],
                                           [call(0, "b", "get_time", '{"tz":"Europe/Paris"}')]))
    assert assemble(sse)["content"] == TWO_CALLS


def test_a_stream_cut_before_done_has_no_message_stop_and_an_error_tail_becomes_an_error_event() -> None:
    sse = render_sse(completion({"content": "hello"}), include_usage=False)
    cut = sse[: sse.index(b"data: [DONE]")]
    assert "message_stop" not in [kind for kind, _ in events(MessageStream().feed(cut))]
    tail = cut + b'data: {"error": {"message": "stream broke", "type": "upstream_error"}}\n\n'
    kinds = events(MessageStream().feed(tail))
    assert kinds[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "stream broke"}})


def test_a_leading_byte_order_mark_is_dropped() -> None:
    """A provider's stream that opens with a UTF-8 BOM reaches ``/v1/messages`` as it came: the BOM
    hid the first chunk's ``data:`` line, and with it the text that chunk carried."""
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    sse = b"\xef\xbb\xbf" + b"".join(
        b"data: " + orjson.dumps({**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
        for delta, finish in (({"role": "assistant", "content": "hello"}, None), ({"content": " there"}, "stop"))
    ) + b"data: [DONE]\n\n"
    for piece in (1, 2, 10_000):
        stream = MessageStream()
        message = assemble(b"".join(stream.feed(sse[i:i + piece]) for i in range(0, len(sse), piece)))
        assert message["content"] == [{"type": "text", "text": "hello there"}]
