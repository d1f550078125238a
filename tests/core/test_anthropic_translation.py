"""The pure translation between OpenAI's chat form and Anthropic's Messages API (no I/O).

The strongest check is the round trip the cache relies on: an Anthropic answer streamed,
translated to OpenAI chunks and reassembled by the gateway's own StreamAssembler must be
exactly the chat completion the same answer gives when not streamed, whatever the chunking.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from reprise.core.anthropic_request import DEFAULT_MAX_TOKENS, messages_request
from reprise.core.anthropic_response import StreamTranslator, chat_completion, is_whole, openai_error
from reprise.core.streaming import StreamAssembler
from reprise.errors import RequestError

USER = [{"role": "user", "content": "hi"}]


def request(**params: Any) -> dict[str, Any]:
    return messages_request({"model": "claude", "messages": USER, **params}, "claude-sonnet-4-5")


def test_the_smallest_request_gets_litellms_default_max_tokens() -> None:
    assert request() == {"model": "claude-sonnet-4-5", "messages": USER, "max_tokens": DEFAULT_MAX_TOKENS}
    assert DEFAULT_MAX_TOKENS == 4096


def test_sampling_and_framing_parameters() -> None:
    out = request(max_tokens=10, max_completion_tokens=20, temperature=0, top_p=1, top_k=5, stop=["a", "b"],
                  stream=True, stream_options={"include_usage": True}, user="u1", n=1)
    assert out == {"model": "claude-sonnet-4-5", "messages": USER, "max_tokens": 20, "temperature": 0,
                   "top_p": 1, "top_k": 5, "stop_sequences": ["a", "b"], "stream": True,
                   "metadata": {"user_id": "u1"}}
    assert request(max_tokens=10, stop="x")["max_tokens"] == 10
    assert request(stop="x")["stop_sequences"] == ["x"]
    assert "stream" not in request(stream=False)


@pytest.mark.parametrize(("params", "param"), [
    ({"frequency_penalty": 1}, "frequency_penalty"),
    ({"presence_penalty": 1}, "presence_penalty"),
    ({"seed": 1}, "seed"),
    ({"logit_bias": {"1": 2}}, "logit_bias"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"reasoning_effort": "low"}, "reasoning_effort"),
    ({"thinking": {"type": "enabled"}}, "thinking"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"n": 3}, "n"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"tools": [{"type": "function", "function": {"name": "f", "examples": [1]}}]}, "tools[0].function.examples"),
    ({"tools": [{"type": "function", "function": {"name": "f"}, "x_new": 1}]}, "tools[0].x_new"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]},
     "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png,raw"}]}]},
     "messages[0].content[0].image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url",
                                                 "image_url": {"url": "data:image/png;base64,@@@"}}]}]},
     "messages[0].content[0].image_url"),
    ({"messages": [*USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
])
def test_what_anthropic_cannot_take_is_refused_naming_it(params: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as refused:
        request(**params)
    assert refused.value.param == param


def test_system_and_developer_messages_go_to_the_top_level_system() -> None:
    out = request(messages=[{"role": "system", "content": "one"}, *USER,
                            {"role": "developer", "content": [{"type": "text", "text": "two"}]}])
    assert out["system"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert out["messages"] == USER


def test_image_parts() -> None:
    parts = [{"type": "text", "text": "what?"},
             {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGVsbG8="}},
             {"type": "image_url", "image_url": "http://example.com/a.png"}]
    assert request(messages=[{"role": "user", "content": parts}])["messages"][0]["content"] == [
        {"type": "text", "text": "what?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "aGVsbG8="}},
        {"type": "image", "source": {"type": "url", "url": "http://example.com/a.png"}}]


def test_tool_calls_and_results() -> None:
    messages = [
        *USER,
        {"role": "assistant", "content": "", "name": "bot", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "a", "content": "one"},
        {"role": "tool", "tool_call_id": "b", "content": "two"},
        {"role": "user", "content": "thanks"},
        {"role": "tool", "tool_call_id": "c", "content": "late"},
    ]
    assert request(messages=messages)["messages"] == [
        *USER,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
                                          {"type": "tool_use", "id": "b", "name": "g", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "one"},
                                     {"type": "tool_result", "tool_use_id": "b", "content": "two"}]},
        {"role": "user", "content": "thanks"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "late"}]},
    ]


def test_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "g"}}]
    out = request(tools=tools, tool_choice="auto")
    assert out["tools"] == [{"name": "f", "description": "d", "input_schema": {"type": "object"}},
                            {"name": "g", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "auto"}
    assert request(tools=tools, tool_choice="required")["tool_choice"] == {"type": "any"}
    assert request(tools=tools, tool_choice="none")["tool_choice"] == {"type": "none"}
    named = {"type": "function", "function": {"name": "g"}}
    assert request(tools=tools, tool_choice=named)["tool_choice"] == {"type": "tool", "name": "g"}
    assert request(tools=tools, parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True}
    assert "tool_choice" not in request(tools=tools, parallel_tool_calls=True)


def test_a_strict_function_is_a_strict_anthropic_tool() -> None:
    def tool(**extra: Any) -> dict[str, Any]:
        return {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, **extra}}
    plain = {"name": "f", "input_schema": {"type": "object"}}
    assert request(tools=[tool(strict=True)])["tools"] == [{**plain, "strict": True}]
    assert request(tools=[tool(strict=False)])["tools"] == request(tools=[tool(strict=None)])["tools"] == [plain]


TEXT = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 8}}
TOOL = {**TEXT, "id": "msg_2", "stop_reason": "tool_use",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"city": "Oslo", "n": [1, 2]}},
                    {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}]}
ONLY_TOOL = {**TOOL, "id": "msg_3", "content": TOOL["content"][1:]}
CUT = {**TEXT, "id": "msg_4", "stop_reason": "max_tokens"}


def test_a_whole_answer_becomes_a_chat_completion() -> None:
    assert chat_completion(TEXT, 1700) == {
        "id": "msg_1", "object": "chat.completion", "created": 1700, "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "logprobs": None,
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "cache_read_input_tokens": 8}}
    tool = chat_completion(TOOL, 1700)
    assert tool is not None
    assert tool["choices"][0]["finish_reason"] == "tool_calls"
    assert tool["choices"][0]["message"] == {"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"city":"Oslo","n":[1,2]}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}
    only = chat_completion(ONLY_TOOL, 1)
    assert only is not None and only["choices"][0]["message"]["content"] is None
    cut = chat_completion(CUT, 1)
    assert cut is not None and cut["choices"][0]["finish_reason"] == "length"
    assert chat_completion({"type": "error", "error": {}}, 1) is None


def test_provider_errors_become_openai_error_json() -> None:
    raw = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert orjson.loads(openai_error(raw, 529)) == {"error": {"message": "Overloaded", "type": "overloaded_error",
                                                             "param": None, "code": "overloaded_error"}}
    assert orjson.loads(openai_error(b"<html>bad gateway</html>", 502))["error"]["message"] == \
        "the provider answered HTTP 502"


def anthropic_sse(message: dict[str, Any], end: bool = True) -> bytes:
    """``message`` as Anthropic streams it (each tool input in fragments, pings between)."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                              "usage": {**message["usage"], "output_tokens": 1}}},
        {"type": "ping"}]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": ch}}
                       for ch in block["text"]]
        else:
            events.append({"type": "content_block_start", "index": i, "content_block": {**block, "input": {}}})
            args = json.dumps(block["input"], separators=(",", ":")) if block["input"] else ""
            events += [{"type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": args[j:j + 4]}}
                       for j in range(0, max(len(args), 1), 4)]
        events.append({"type": "content_block_stop", "index": i})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": message["usage"]["output_tokens"]}})
    if end:
        events.append({"type": "message_stop"})
    return b"".join(b"event: %s\r\ndata: %s\r\n\r\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


@pytest.mark.parametrize("message", [TEXT, TOOL, ONLY_TOOL, CUT], ids=["text", "tool", "only-tool", "length"])
@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_a_streamed_answer_reassembles_to_the_whole_answer(message: dict[str, Any], piece: int) -> None:
    sse = anthropic_sse(message)
    translator = StreamTranslator(created=1700, usage_chunk=True)
    assembler = StreamAssembler()
    for start in range(0, len(sse), piece):
        assembler.feed(translator.feed(sse[start:start + piece]))
    assert translator.finished and translator.failure is None
    assert assembler.complete
    assert assembler.completion() == chat_completion(message, 1700)


def test_without_the_usage_chunk_no_chunk_mentions_usage() -> None:
    out = StreamTranslator(created=1, usage_chunk=False).feed(anthropic_sse(TEXT))
    assert b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    chunks = [orjson.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "H"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_a_stream_without_message_stop_never_completes() -> None:
    translator = StreamTranslator(created=1, usage_chunk=True)
    assembler = StreamAssembler()
    assembler.feed(translator.feed(anthropic_sse(TEXT, end=False)))
    assert not translator.finished and not assembler.complete


def test_an_error_event_fails_the_stream_and_nothing_after_it_is_read() -> None:
    sse = anthropic_sse(TEXT)
    head, _, _ = sse.partition(b"event: message_delta")
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    translator = StreamTranslator(created=1, usage_chunk=False)
    out = translator.feed(head + error + b"event: message_delta" + sse.partition(b"event: message_delta")[2])
    assert translator.failure is not None and "Overloaded" in translator.failure
    assert not translator.finished and b"[DONE]" not in out


def test_a_malformed_event_fails_the_stream() -> None:
    translator = StreamTranslator(created=1, usage_chunk=False)
    translator.feed(b"event: message_start\ndata: not json\n\n")
    assert translator.failure is not None


def event(kind: str, **fields: Any) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps({"type": kind, **fields}))


@pytest.mark.parametrize(("blocks", "lost"), [
    ([{"type": "text", "text": "Hello"}, {"type": "mystery_block", "data": "x"}, {"type": "text", "text": " world"}],
     ["mystery_block"]),
    ([{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "redacted_thinking", "data": "d"},
      {"type": "text", "text": "Hello world"}], ["thinking", "redacted_thinking"]),
    ([{"type": "text", "text": "Hello world", "citations": [{"type": "char_location"}], "x_new": 1}],
     ["text.citations", "text.x_new"]),
    ([{"type": "text", "text": "Hello world"}, {"type": "text", "text": 7}], ["text.text"]),
    ([{"text": "Hello world"}], ["a block without a type"]),
])
def test_a_block_or_key_not_translated_is_named_and_makes_the_answer_unstorable(
        blocks: list[dict[str, Any]], lost: list[str]) -> None:
    completion = chat_completion({**TEXT, "content": blocks}, 1)
    assert completion is not None
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["anthropic_untranslated"] == lost
    assert choice["message"]["content"] in ("Hello world", None)
    assert not is_whole(completion)


def test_keys_that_hold_nothing_lose_nothing() -> None:
    completion = chat_completion({**TEXT, "content": [{"type": "text", "text": "Hello", "citations": None},
                                                      {"type": "text", "text": " world", "citations": []}]}, 1)
    assert completion == chat_completion(TEXT, 1)
    assert completion is not None and is_whole(completion)


@pytest.mark.parametrize(("events", "lost"), [
    ([event("content_block_delta", index=0, delta={"type": "mystery_delta", "stuff": "zzz"})], ["mystery_delta"]),
    ([event("content_block_delta", index=0, delta={"type": "citations_delta", "citation": {"type": "x"}})],
     ["citations_delta"]),
    ([event("content_block_delta", index=0, delta={"type": "text_delta", "text": "", "x_new": True})],
     ["text_delta.x_new"]),
    ([event("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": "{}"})],
     ["input_json_delta to block 0"]),
    ([event("content_block_start", index=5, content_block={"type": "thinking", "thinking": ""}),
      event("content_block_delta", index=5, delta={"type": "thinking_delta", "thinking": "hm"}),
      event("content_block_delta", index=5, delta={"type": "signature_delta", "signature": "s"}),
      event("content_block_stop", index=5)], ["thinking"]),
    ([event("content_block_start", index=5, content_block={"type": "text", "text": "", "citations": [{"a": 1}]})],
     ["text.citations"]),
    ([event("an_event_added_later", data="x")], ["an_event_added_later"]),
])
def test_a_streamed_delta_block_or_event_not_translated_is_named_and_never_complete(
        events: list[bytes], lost: list[str]) -> None:
    """The stream of TEXT with ``events`` put after its first text delta: still sent, every
    translated event as before, the loss named in the finish chunk, and the translator says so."""
    sse = anthropic_sse(TEXT)
    cut = sse.index(b"event: content_block_delta")
    cut = sse.index(b"\r\n\r\n", cut) + 4
    translator = StreamTranslator(created=1700, usage_chunk=True)
    assembler = StreamAssembler()
    assembler.feed(translator.feed(sse[:cut] + b"".join(events) + sse[cut:]))
    assert translator.finished and translator.failure is None and translator.untranslated == lost
    whole = chat_completion(TEXT, 1700)
    assert whole is not None
    whole["choices"][0]["anthropic_untranslated"] = lost
    assert assembler.completion() == whole  # all that could be translated, and what could not named


def test_a_stream_with_everything_translated_has_nothing_untranslated() -> None:
    translator = StreamTranslator(created=1, usage_chunk=False)
    out = translator.feed(anthropic_sse(TOOL))
    assert translator.finished and translator.untranslated == [] and b"anthropic_untranslated" not in out
