"""Streams that are not what they look like: an error after a finished answer, tool calls
without addresses, content that changes type. Each once stored something the provider never gave."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from reprise.core.sse_record import CompletionsRecorder
from reprise.core.sse_replay import DONE_EVENT, render_sse
from reprise.core.streaming import StreamAssembler

BOM = b"\xef\xbb\xbf"
HEAD = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m"}


def sse(body: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(body) + b"\n\n"


def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    return sse({**HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


FINISHED = chunk({"role": "assistant", "content": "a"}) + chunk({"content": "b"}, "stop")
USAGE_ONLY = sse({**HEAD, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})

ERRORS = {
    # OpenAI-style named event: its data has no "error" key to give it away.
    "event: error": b'event: error\ndata: {"message":"quota exceeded","code":"insufficient_quota"}\n\n',
    # vLLM's error object, sent as a chunk.
    "vllm object error": sse({"object": "error", "message": "internal error", "type": "InternalServerError",
                              "param": None, "code": 500}),
    # Not a chunk at all: no choices, no usage.
    "not a chunk": sse({"message": "overloaded"}),
}


def assembled_and_replayed(raw: bytes) -> dict[str, Any]:
    """The complete answer ``raw`` assembles to, checked to come back whole from its own replay."""
    asm = StreamAssembler()
    asm.feed(raw)
    assert asm.complete
    done = asm.completion()
    replay = StreamAssembler()
    replay.feed(render_sse(done, include_usage=True))
    assert replay.completion() == done
    return done


@pytest.mark.parametrize("error", ERRORS.values(), ids=ERRORS.keys())
def test_an_error_event_after_a_finished_answer_is_forwarded_but_never_complete(error: bytes) -> None:
    raw = FINISHED + error + DONE_EVENT
    asm = StreamAssembler()
    assert b"".join(asm.feed(raw)) == raw
    assert not asm.complete


def test_usage_only_and_filter_result_chunks_are_still_chunks() -> None:
    no_choices = sse({**HEAD, "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
    azure_first = sse({**HEAD, "choices": [], "prompt_filter_results": []})
    named = b"event: message\n" + chunk({"content": "c"})
    for raw in (azure_first + FINISHED + USAGE_ONLY + DONE_EVENT, FINISHED + no_choices + DONE_EVENT,
                FINISHED + named + DONE_EVENT):
        asm = StreamAssembler()
        asm.feed(raw)
        assert asm.complete, raw


def completions_chunk(text: str, finish: str | None) -> bytes:
    choice = {"text": text, "index": 0, "finish_reason": finish}
    return sse({"id": "c1", "object": "text_completion", "model": "m", "choices": [choice]})


@pytest.mark.parametrize("error", ERRORS.values(), ids=ERRORS.keys())
def test_an_error_event_in_a_completions_stream_is_never_complete(error: bytes) -> None:
    whole = completions_chunk("a", None) + completions_chunk("", "stop")
    recorder = CompletionsRecorder()
    assert b"".join(recorder.feed(whole + error + DONE_EVENT)) == whole + error + DONE_EVENT
    assert not recorder.complete
    usage_only = sse({"id": "c1", "object": "text_completion", "choices": [], "usage": {"total_tokens": 3}})
    recorder = CompletionsRecorder()
    recorder.feed(whole + usage_only + DONE_EVENT)
    assert recorder.complete


@pytest.mark.parametrize("ids", [{}, {"id": ""}], ids=["no id", "empty id"])
def test_index_less_tool_calls_in_one_delta_are_separate_calls(ids: dict[str, str]) -> None:
    calls = [{**ids, "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
             {**ids, "type": "function", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}]
    raw = (chunk({"role": "assistant", "content": None, "tool_calls": calls})
           + chunk({"tool_calls": [{"function": {"arguments": ""}}]})  # a later delta continues the last call
           + chunk({}, "tool_calls") + USAGE_ONLY + DONE_EVENT)
    done = assembled_and_replayed(raw)
    assert done["choices"][0]["message"]["tool_calls"] == calls


THINKING = [{"type": "thinking", "thinking": [{"type": "text", "text": "Let me think"}]}]


@pytest.mark.parametrize(("deltas", "content"), [
    # Mistral's Magistral: thinking as a list of parts, then the answer as strings.
    (["", THINKING, "The answer ", "is 4."], [*THINKING, {"type": "text", "text": "The answer is 4."}]),
    (["Hello ", [{"type": "text", "text": "world"}]], [{"type": "text", "text": "Hello "},
                                                       {"type": "text", "text": "world"}]),
    (["a", THINKING, "b", "c", THINKING], [{"type": "text", "text": "a"}, *THINKING,
                                           {"type": "text", "text": "bc"}, *THINKING]),
])
def test_content_switching_between_text_and_parts_keeps_both_in_order(
        deltas: list[object], content: list[object]) -> None:
    raw = b"".join(chunk({"content": d}) for d in deltas) + chunk({}, "stop") + USAGE_ONLY + DONE_EVENT
    done = assembled_and_replayed(raw)
    assert done["choices"][0]["message"]["content"] == content


@pytest.mark.parametrize("piece", [1, 2, 3, 4, 10_000])
def test_a_leading_byte_order_mark_is_dropped_not_the_first_event(piece: int) -> None:
    """Found from outside: a stream opening with a UTF-8 BOM (which the SSE standard lets a
    provider send and has readers drop) lost its first chunk from the stored answer, and was
    still stored as complete; the client of the miss, stripping the BOM, read it whole."""
    raw = BOM + FINISHED + DONE_EVENT
    asm = StreamAssembler()
    for start in range(0, len(raw), piece):
        asm.feed(raw[start:start + piece])
    assert asm.complete
    assert asm.completion()["choices"][0]["message"]["content"] == "ab"
    recorder = CompletionsRecorder()
    event = sse({"id": "c", "object": "text_completion", "created": 5, "model": "m",
                 "choices": [{"index": 0, "text": "whole", "logprobs": None, "finish_reason": "stop"}]})
    for start in range(0, len(BOM + event + DONE_EVENT), piece):
        recorder.feed((BOM + event + DONE_EVENT)[start:start + piece])
    assert recorder.complete


def test_a_byte_order_mark_after_the_start_is_data() -> None:
    asm = StreamAssembler()
    asm.feed(FINISHED + BOM + DONE_EVENT)  # not at the start: not a BOM to drop, an event of no data line
    assert asm.completion()["choices"][0]["message"]["content"] == "ab"
