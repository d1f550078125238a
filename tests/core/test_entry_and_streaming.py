"""Entry encoding and SSE reassembly / replay."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reprise.core.answer_bounds import MAX_RECORDED_BYTES
from reprise.core.chat_answer import is_chat_completion, judge_chat_completion
from reprise.core.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from reprise.core.sse_replay import DONE_EVENT, render_sse
from reprise.core.streaming import StreamAssembler


def test_entry_round_trip() -> None:
    entry = CacheEntry(body=b'{"a":1}', created_at=12.5, expires_at=99.0, meta={"model": "m"})
    assert decode_entry(encode_entry(entry)) == entry
    plain = CacheEntry(body=b"", created_at=1.0)
    assert decode_entry(encode_entry(plain)) == plain


@given(st.binary(max_size=64))
def test_garbage_is_never_an_entry(data: bytes) -> None:
    try:
        decode_entry(data)
    except EntryFormatError:
        return
    assert data.startswith((b"RPE1", b"RPE2"))


def test_truncated_entry_rejected() -> None:
    raw = encode_entry(CacheEntry(body=b"x", created_at=1.0, meta={"k": "v" * 50}))
    with pytest.raises(EntryFormatError):
        decode_entry(raw[:30])


def chunk(delta: dict[str, object], finish: str | None = None, index: int = 0) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'


def full_stream() -> bytes:
    return b"".join([
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello"}),
        chunk({"content": " world"}),
        chunk({}, "stop"),
        USAGE,
        b"data: [DONE]\n\n",
    ])


def test_assembles_a_complete_stream_in_any_split() -> None:
    raw = full_stream()
    for size in (1, 7, 64, len(raw)):
        asm = StreamAssembler()
        forwarded = b"".join(b"".join(asm.feed(raw[i : i + size])) for i in range(0, len(raw), size))
        assert forwarded == raw
        assert asm.complete
        done = asm.completion()
        assert done["choices"][0]["message"] == {"role": "assistant", "content": "Hello world"}
        assert done["usage"]["total_tokens"] == 5


def test_usage_chunk_dropped_when_client_did_not_ask() -> None:
    asm = StreamAssembler(drop_usage_chunk=True)
    forwarded = b"".join(asm.feed(full_stream()))
    assert b'"choices":[]' not in forwarded
    assert asm.completion()["usage"]["total_tokens"] == 5


@pytest.mark.parametrize(
    "raw",
    [
        full_stream().replace(b"data: [DONE]\n\n", b""),  # no DONE
        b"".join([chunk({"content": "Hel"}), b"data: [DONE]\n\n"]),  # no finish_reason
        b"".join([chunk({"content": "x"}), b"data: {not json\n\n", chunk({}, "stop"), b"data: [DONE]\n\n"]),
        b'data: {"error": {"message": "boom"}}\n\ndata: [DONE]\n\n',
    ],
)
def test_incomplete_or_malformed_streams_are_not_complete(raw: bytes) -> None:
    asm = StreamAssembler()
    asm.feed(raw)
    assert not asm.complete


def test_tool_calls_reassembled_and_replayed() -> None:
    raw = b"".join([
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_w", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ])
    asm = StreamAssembler()
    asm.feed(raw)
    assert asm.complete
    message = asm.completion()["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "get_w", "arguments": '{"city":"Paris"}'}}
    ]
    replay = StreamAssembler()
    replay.feed(render_sse(asm.completion(), include_usage=False))
    assert replay.complete
    assert replay.completion()["choices"] == asm.completion()["choices"]


def test_render_is_valid_sse_and_round_trips_multiple_choices() -> None:
    completion = {
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": f"answer {i}"},
             "logprobs": None, "finish_reason": "stop"} for i in range(2)
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    sse = render_sse(completion, include_usage=True)
    assert sse.endswith(b"data: [DONE]\n\n")
    for event in sse.strip().split(b"\n\n"):
        assert event.startswith(b"data: ")
    asm = StreamAssembler()
    asm.feed(sse)
    assert asm.complete
    assert asm.completion()["choices"] == completion["choices"]
    assert asm.completion()["usage"] == completion["usage"]
    assert b'"usage"' not in render_sse(completion, include_usage=False)


def test_reasoning_content_is_kept_and_replayed() -> None:
    raw = b"".join([
        chunk({"role": "assistant", "content": "", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing..."}),
        chunk({"content": "42"}),
        chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ])
    asm = StreamAssembler()
    asm.feed(raw)
    message = asm.completion()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "42", "reasoning_content": "Thinking..."}
    replay = StreamAssembler()
    replay.feed(render_sse(asm.completion(), include_usage=False))
    assert replay.completion() == asm.completion()


def test_legacy_function_call_is_reassembled_and_replayed() -> None:
    raw = b"".join([
        chunk({"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ""}}),
        chunk({"function_call": {"arguments": '{"city"'}}),
        chunk({"function_call": {"arguments": ':"Paris"}'}}),
        chunk({}, "function_call"),
        b"data: [DONE]\n\n",
    ])
    asm = StreamAssembler()
    asm.feed(raw)
    assert asm.complete
    message = asm.completion()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": None,
                       "function_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    replay = StreamAssembler()
    replay.feed(render_sse(asm.completion(), include_usage=True))
    assert replay.completion()["choices"] == asm.completion()["choices"]


def test_unknown_fields_are_kept_at_every_level() -> None:
    first = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "x_groq": {"id": "req_1"},
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "novel": "a",
                                                "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                                "function": {"name": "f", "arguments": "{"},
                                                                "extra": {"k": [1]}}]},
                          "finish_reason": None}]}
    last = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m", "x_groq": None,
            "choices": [{"index": 0, "delta": {"novel": "b", "tool_calls": [
                {"index": 0, "function": {"arguments": "}"}, "extra": {"k": [2]}}]},
                "finish_reason": "tool_calls", "stop_reason": 7}]}
    asm = StreamAssembler()
    asm.feed(b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in (first, last)) + b"data: [DONE]\n\n")
    assert asm.complete
    done = asm.completion()
    assert done["object"] == "chat.completion"
    assert done["x_groq"] == {"id": "req_1"}  # last non-null wins
    choice = done["choices"][0]
    assert choice["stop_reason"] == 7
    assert choice["message"] == {
        "role": "assistant", "content": "", "novel": "ab",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"},
                        "extra": {"k": [1, 2]}}],
    }
    replay = StreamAssembler()
    replay.feed(render_sse(done, include_usage=False))
    assert replay.completion() == done


def test_crlf_split_between_feeds_comments_and_event_lines_are_forwarded() -> None:
    raw = (b": ping\r\n\r\nevent: message\r\ndata: " + chunk({"content": "hi"})[6:-2] + b"\r\n\r\ndata:"
           + chunk({}, "stop")[5:-2] + b"\r\n\r\ndata: [DONE]\r\n\r\n")
    for cut in range(len(raw) + 1):
        asm = StreamAssembler()
        forwarded = b"".join(asm.feed(raw[:cut]) + asm.feed(raw[cut:]))
        assert forwarded == raw.replace(b"\r\n", b"\n")
        assert asm.complete
        assert asm.completion()["choices"][0]["message"]["content"] == "hi"


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    raw = b"".join([
        chunk({"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                                                    "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ])
    asm = StreamAssembler()
    asm.feed(raw)
    calls = asm.completion()["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["arguments"]) for c in calls] == [("a", "{}"), ("b", "{}")]


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'"text"', b'{"choices": "x"}', b'{"choices": [3]}', b'{"choices": [{"index": "0", "delta": {}}]}',
     b'{"choices": [{"index": 0, "delta": "x"}]}', b'{"choices": [{"index": 0, "delta": {"tool_calls": [1]}}]}',
     b'{"choices": [{"index": 0, "delta": {"deep": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}}]}",
     b'{"choices": [{"index": 0, "delta": {"deep": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}}]}"],
)
def test_odd_chunks_never_raise_and_are_never_complete(payload: bytes) -> None:
    """Not JSON objects, the wrong shapes, or nested deeper than JSON can be written back (orjson: 254)."""
    asm = StreamAssembler()
    forwarded = asm.feed(chunk({"content": "x"}) + b"data: " + payload + b"\n\n" + chunk({}, "stop") + DONE_EVENT)
    assert len(forwarded) == 4
    if payload.startswith(b'{"choices": [{"index": 0, "delta": {"deep"') and len(payload) < 2000:
        assert asm.complete  # merged 32 levels deep, kept whole below, and can still be written
        assert orjson.loads(orjson.dumps(asm.completion())) == asm.completion()
        assert orjson.loads(render_sse(asm.completion(), False).split(b"\n\n")[1][6:])
    else:
        assert not asm.complete


def test_render_follows_openais_usage_format() -> None:
    completion = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "service_tier": "default",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                            "prompt_tokens_details": {"cached_tokens": 0}}}
    events = [orjson.loads(e.removeprefix(b"data: ")) for e in render_sse(completion, True).split(b"\n\n")[:-2]]
    assert all(e["object"] == "chat.completion.chunk" and e["service_tier"] == "default" for e in events)
    assert all(e["usage"] is None for e in events[:-1])
    assert events[-1]["choices"] == [] and events[-1]["usage"] == completion["usage"]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_is_chat_completion() -> None:
    assert is_chat_completion({"choices": [{"message": {}}]})
    others: list[object] = [None, [], {}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": "x"}]}]
    for other in others:
        assert not is_chat_completion(other)


def test_a_plain_chat_answer_is_judged_as_its_stream_would_be() -> None:
    done = {"message": {"content": "a"}, "finish_reason": "stop"}
    cut = {"message": {"content": "b"}, "finish_reason": None}
    assert judge_chat_completion({"choices": [done, done]}) is True
    assert judge_chat_completion({"choices": [done, done], "error": None}) is True
    assert judge_chat_completion({"choices": [cut]}) is False
    assert judge_chat_completion({"choices": [done, cut]}) is False
    assert judge_chat_completion({"choices": [done], "error": {"message": "overloaded"}}) is None
    assert judge_chat_completion({"choices": [{"finish_reason": "stop"}]}) is None
    # vLLM's error object with choices that look finished: a failure, as it is in a stream
    assert judge_chat_completion({"object": "error", "message": "backend failure", "choices": [done]}) is None


def test_a_stream_past_the_recording_bound_is_forwarded_but_never_complete() -> None:
    piece = chunk({"content": "x" * 2**16})
    asm = StreamAssembler()
    fed = chunk({"role": "assistant", "content": ""})
    forwarded = asm.feed(fed)
    for _ in range(MAX_RECORDED_BYTES // len(piece) + 2):
        forwarded += asm.feed(piece)
        fed += piece
    end = chunk({}, "stop") + USAGE + b"data: [DONE]\n\n"
    forwarded += asm.feed(end)
    assert b"".join(forwarded) == fed + end  # every event passed on
    assert asm.done and asm.overflow and not asm.complete
    assert asm.completion()["choices"] == []  # what was merged was let go


def test_one_event_longer_than_the_bound_is_passed_on_as_it_comes() -> None:
    asm = StreamAssembler(drop_usage_chunk=True)
    head = b'data: {"choices":[{"index":0,"delta":{"content":"'
    forwarded = asm.feed(head)
    fed, piece = head, b"x" * 2**20
    for _ in range(MAX_RECORDED_BYTES // len(piece) + 4):
        forwarded += asm.feed(piece)
        fed += piece
        assert len(fed) - sum(map(len, forwarded)) <= MAX_RECORDED_BYTES + len(piece)
    end = b'"}}]}\n\n' + chunk({}, "stop") + USAGE + b"data: [DONE]\n\n"
    forwarded += asm.feed(end)
    assert b"".join(forwarded) == fed + end.replace(USAGE, b"")  # the unasked usage chunk still dropped
    assert asm.done and asm.overflow and not asm.complete
