"""Per-chunk values: a stream whose merge lost some is kept as its events too, and replayed as it came.

core/chunk_record.py (the recording), core/streaming.py (when the merge lost a value),
core/entry.py (the entry that carries a recording) and core/replay_memo.py (what a streamed
hit sends).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest

from reprise.core.answer_bounds import MAX_RECORDED_BYTES
from reprise.core.chunk_record import ChunkRecording, replay_recording
from reprise.core.entry import CacheEntry, EntryFormatError, decode_entry, encode_entry
from reprise.core.replay_memo import ReplayMemo, replay
from reprise.core.sse_replay import render_sse
from reprise.core.streaming import StreamAssembler

BASE = {"id": "c", "object": "chat.completion.chunk", "created": 5, "model": "x"}
USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def sse(data: dict[str, Any] | None) -> bytes:
    return b"data: " + (b"[DONE]" if data is None else orjson.dumps(data)) + b"\n\n"


def choice(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"index": 0, "delta": delta, **extra, "finish_reason": finish}


def per_chunk_stream() -> list[bytes]:
    """The finding: ``obfuscation`` and ``x_seq`` change in every chunk; a keep-alive; the usage chunk."""
    return [
        sse({**BASE, "obfuscation": "Qz1", "x_seq": 1, "choices": [choice({"role": "assistant", "content": "Hel"})]}),
        b": keep-alive\n\n",
        sse({**BASE, "obfuscation": "pL", "x_seq": 2, "choices": [choice({"content": "lo"})]}),
        sse({**BASE, "obfuscation": "z", "x_seq": 3, "choices": [choice({}, "stop")]}),
        sse({**BASE, "choices": [], "usage": USAGE}),
        sse(None),
    ]


def assembled(events: list[bytes], drop_usage: bool = False) -> tuple[StreamAssembler, bytes]:
    asm = StreamAssembler(drop_usage_chunk=drop_usage)
    forwarded = b"".join(b"".join(asm.feed(event)) for event in events)
    assert asm.complete
    return asm, forwarded


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_with_per_chunk_values_replays_as_it_was_forwarded(include_usage: bool) -> None:
    events = per_chunk_stream()
    asm, forwarded = assembled(events, drop_usage=not include_usage)
    assert asm.lossy
    recording = asm.recording()
    answer = orjson.dumps(asm.completion())
    assert replay(answer, include_usage, recording) == forwarded
    assert replay(answer, True, recording) == b"".join(events)  # the usage chunk follows the client's choice
    # The plain answer keeps one value per field, the last, as a provider's plain answer carries one.
    completion = asm.completion()
    assert (completion["obfuscation"], completion["x_seq"], completion["usage"]) == ("z", 3, USAGE)


@pytest.mark.parametrize("events", [
    [sse({**BASE, "choices": [choice({"content": "a"}, x_token=1)]}),  # a choice-level value per chunk
     sse({**BASE, "choices": [choice({"content": "b"}, "stop", x_token=2)]}), sse(None)],
    [sse({**BASE, "usage": {**USAGE, "completion_tokens": 1}, "choices": [choice({"content": "a"})]}),
     sse({**BASE, "usage": USAGE, "choices": [choice({"content": "b"}, "stop")]}), sse(None)],  # vLLM's usage per chunk
    [sse({**BASE, "id": "", "model": "", "created": 0, "choices": [], "prompt_filter_results": []}),
     sse({**BASE, "choices": [choice({"content": "a"}, "stop")]}), sse(None)],  # Azure's first chunk
    [sse({**BASE, "choices": [choice({"role": "assistant", "content": "a", "x_pos": 1})]}),  # a delta-level
     sse({**BASE, "choices": [choice({"content": "b", "x_pos": 2, "x_final": False})]}),     # number and
     sse({**BASE, "choices": [choice({"x_final": True}, "stop")]}), sse(None)],              # flag per chunk
], ids=["choice-level", "usage-per-chunk", "azure-first-chunk", "delta-level"])
def test_any_value_replaced_in_the_merge_keeps_the_events(events: list[bytes]) -> None:
    asm, forwarded = assembled(events)
    assert asm.lossy and replay(orjson.dumps(asm.completion()), True, asm.recording()) == forwarded


def test_a_stream_whose_chunks_agree_keeps_no_events() -> None:
    """Repeated values, values only in some chunks (sparse providers), OpenAI's ``usage: null`` then the
    usage chunk: nothing is lost, the merged answer replays them all, nothing else is stored."""
    events = [
        sse({**BASE, "usage": None, "system_fingerprint": "fp", "choices": [choice({"role": "assistant"})]}),
        sse({"object": "chat.completion.chunk", "usage": None, "choices": [choice({"content": "Hi"})]}),
        sse({**BASE, "usage": None, "system_fingerprint": "fp", "choices": [choice({}, "stop")]}),
        sse({**BASE, "choices": [], "usage": USAGE}),
        sse(None),
    ]
    asm, _ = assembled(events)
    assert not asm.lossy and asm.recording() == b""
    answer = orjson.dumps(asm.completion())
    assert replay(answer, True, asm.recording()) == render_sse(asm.completion(), True)


def test_a_stream_past_the_bound_records_nothing() -> None:
    asm = StreamAssembler()
    asm.feed(per_chunk_stream()[0])
    asm.feed(b"data: " + b"x" * (MAX_RECORDED_BYTES + 1))
    assert asm.overflow and asm.recording() == b""


def test_a_recording_that_does_not_read_falls_back_to_the_answer() -> None:
    asm, _ = assembled(per_chunk_stream())
    answer, recording = orjson.dumps(asm.completion()), asm.recording()
    linear = render_sse(asm.completion(), False)
    bomb = zlib.compress(b"-" + b" " * (2 * MAX_RECORDED_BYTES + 2))  # more than was ever recorded
    untagged = zlib.compress(b"data: {}\n\n")
    for broken in (recording[:-3], b"not zlib", bomb, untagged, zlib.compress(b"-data: {}")):
        assert replay_recording(broken, False) is None
        assert replay(answer, False, broken) == linear


def test_the_recording_compresses_what_chunks_repeat() -> None:
    """1,000 OpenAI-shaped chunks (~250 bytes each) are kept in a small fraction of their size."""
    recording = ChunkRecording()
    head = {"id": "chatcmpl-BxYZabcdefghij", "object": "chat.completion.chunk", "created": 1754000000,
            "model": "gpt-4o-mini-2024-07-18", "service_tier": "default", "system_fingerprint": "fp_34a54ae93c"}
    raw = 0
    for i in range(1000):
        event = sse({**head, "choices": [choice({"content": f" w{i % 50}"})], "obfuscation": f"{i * 7919:x}"})
        raw += len(event)
        recording.add(event, usage_only=False)
    assert len(recording.finish()) < raw / 10
    assert recording.finish() is recording.finish()


def test_an_entry_carries_its_recording_and_only_then_changes_form() -> None:
    plain = CacheEntry(body=b'{"a":1}', created_at=1.0, meta={"m": 1})
    assert encode_entry(plain).startswith(b"RPE1")  # as before recordings: older versions still read it
    recorded = CacheEntry(body=b'{"a":1}', created_at=1.0, expires_at=9.0, meta={"m": 1}, recording=b"zzz")
    raw = encode_entry(recorded)
    assert raw.startswith(b"RPE2")
    decoded = decode_entry(raw)
    assert decoded == recorded
    assert isinstance(decoded.body, memoryview) and decoded.body.obj is decoded.recording.obj  # type: ignore[union-attr]
    for cut in (len(raw) - 8, 24, 27):  # into the recording, at its length, into its length
        with pytest.raises(EntryFormatError):
            decode_entry(raw[:cut])


def test_the_memo_sends_an_entrys_recording_and_tells_recordings_apart() -> None:
    asm, forwarded = assembled(per_chunk_stream(), drop_usage=True)
    answer, recording = orjson.dumps(asm.completion()), asm.recording()
    entry = decode_entry(encode_entry(CacheEntry(body=answer, created_at=1.0, recording=recording)))
    memo = ReplayMemo()
    first = memo.render("k", entry.body, False, entry.recording)
    assert first == forwarded
    assert memo.render("k", entry.body, False, entry.recording) is first
    # A shared answer holds its recording apart: the same body with another recording is another replay.
    other, _ = assembled([e.replace(b'"Qz1"', b'"Qz2"') for e in per_chunk_stream()])
    assert orjson.dumps(other.completion()) == answer
    assert memo.render("k", answer, False, other.recording()) == forwarded.replace(b'"Qz1"', b'"Qz2"')
    assert memo.render("k", answer, False, recording) == forwarded
    assert memo.render("k", answer, False) == render_sse(asm.completion(), False)


def test_a_lossy_stream_longer_than_its_recording_may_be_is_never_kept() -> None:
    """Found from outside: 29 MB of ``obfuscation`` chunks were recorded (0.8 MB compressed) and every
    streamed hit unpacked them on the event loop (0.2 s). Past the recording's bound such a stream is
    forwarded whole and not stored; one whose chunks agree is stored from its merged answer as before."""
    from reprise.core.chunk_record import MAX_REPLAY_BYTES

    def stream(per_chunk: bool) -> list[bytes]:
        word = "x" * 200
        padding = [{"obfuscation": str(i)} if per_chunk else {} for i in range(MAX_REPLAY_BYTES // 250)]
        events = [sse({**BASE, **pad, "choices": [choice({"content": word})]}) for pad in padding]
        return [*events, sse({**BASE, "choices": [choice({}, "stop")]}), sse(None)]

    lossy = StreamAssembler()
    forwarded = b"".join(b"".join(lossy.feed(event)) for event in stream(True))
    assert forwarded == b"".join(stream(True))  # the client of the miss gets all of it
    assert lossy.done and lossy.overflow and not lossy.complete
    agreeing = StreamAssembler()
    for event in stream(False):
        agreeing.feed(event)
    assert agreeing.complete and agreeing.recording() == b""
