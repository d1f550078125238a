"""A chat stream's own events, kept beside its merged answer when merging lost values.

Why: a chat stream is stored as its merged ``chat.completion`` (:mod:`reprise.core.streaming`),
so that plain and streamed requests share one entry, and a streamed hit is rendered from it
(:func:`~reprise.core.sse_replay.render_sse`). That keeps every field, but a field whose value
changes from chunk to chunk keeps one value only, its last: OpenAI's per-chunk
``obfuscation`` padding (sent by default: ``stream_options.include_obfuscation``), a
vendor's per-chunk counter, usage reported on every chunk. When the assembler sees a value
replaced by a different one (:attr:`~reprise.core.streaming.StreamAssembler.lossy`), the
stream's events are stored beside the merged answer and a streamed hit sends them as they
came: every per-chunk value in its chunk, and the provider's chunking with them. The
plain answer is still the merged one (one value per field, the last, as a provider's plain
answer has one).

The form: every event as the assembler read it (line ends normalised to ``\\n``, with its
blank line), after one tag byte, ``U`` for a usage-only chunk (``choices: []``, sent only to
a client that asked for usage, as live) and ``-`` for any other; all of it compressed as it
arrives. The chunks repeat ``id``, ``model``, ``created``... in every event: measured on
1,000 OpenAI-shaped chunks (a word of English each, 320 KB of events), the recording is
16 KB with ``obfuscation`` (random padding barely compresses) and 7.6 KB without, beside a
merged answer of 8 KB; recording costs ~2.6 µs per event on the miss (the assembler's own
work is ~6.4 µs). A small window (4 KB: chunks repeat their neighbours) keeps the
compressor's state at ~32 KB per stream in flight. What is recorded is bounded by
:data:`MAX_REPLAY_BYTES`: past it a stream whose merge loses values is not stored.
"""

from __future__ import annotations

import zlib

from reprise.core.answer_bounds import MAX_RECORDED_BYTES

USAGE_TAG = b"U"
OTHER_TAG = b"-"
_WBITS = 12
_MEM_LEVEL = 5
#: Events a stream may record (before compression). A streamed hit unpacks its recording
#: and joins its events on the event loop (~6 ms per MiB), once per key while the replay
#: memo keeps it: a bound keeps that pause short even when the memo cannot. A lossy stream
#: with more events is sent whole and shared, never stored (found from outside: 29 MB of
#: ``obfuscation`` chunks, 0.8 MB stored, cost 0.2 s of event loop on every hit).
MAX_REPLAY_BYTES = 4 * 2**20
#: The most a recording can hold: the assembler's bound, and a tag byte per event (at least
#: two bytes each). A stored one that unpacks to more was not written by us.
_MAX_RAW = 2 * MAX_RECORDED_BYTES


class ChunkRecording:
    """Compresses a stream's events as they arrive; :meth:`finish` gives the stored form."""

    __slots__ = ("_parts", "_zip", "_done")

    def __init__(self) -> None:
        self._zip = zlib.compressobj(6, zlib.DEFLATED, _WBITS, _MEM_LEVEL)
        self._parts: list[bytes] = []
        self._done: bytes | None = None

    def add(self, event: bytes, usage_only: bool) -> None:
        """One whole event (its blank line included), tagged as a usage-only chunk or not."""
        if self._done is None and (out := self._zip.compress((USAGE_TAG if usage_only else OTHER_TAG) + event)):
            self._parts.append(out)

    def finish(self) -> bytes:
        """The recording, compressed: what an entry keeps (the same bytes on every call)."""
        if self._done is None:
            self._parts.append(self._zip.flush())
            self._done = b"".join(self._parts)
            self._parts.clear()
        return self._done


def replay_recording(recording: bytes | memoryview, include_usage: bool) -> bytes | None:
    """The recorded events to send, in order; the usage-only chunks only with ``include_usage``
    (the client's ``stream_options.include_usage``). None when the recording is not one
    (corrupt in the store): the caller renders the merged answer instead."""
    unzip = zlib.decompressobj()
    try:
        raw = unzip.decompress(recording, _MAX_RAW)
    except zlib.error:
        return None
    if not unzip.eof or unzip.unconsumed_tail:  # cut short, or more than was ever recorded
        return None
    # Each event ends with its blank line and none holds another: a split on blank lines finds
    # them all, each one after its tag byte.
    events = raw.split(b"\n\n")
    if events.pop() != b"" or any(event[:1] not in (USAGE_TAG, OTHER_TAG) for event in events):
        return None
    return b"".join(event[1:] + b"\n\n" for event in events if include_usage or event[:1] != USAGE_TAG)
