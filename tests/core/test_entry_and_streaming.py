"""Entry encoding and SSE reassembly / replay."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reprise.core.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from reprise.core.streaming import StreamAssembler, render_sse


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
    assert data.startswith(b"RPE1")


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
