"""The stored form of one cached answer, and its byte encoding.

An entry carries its own creation and expiry times, so any store (with or
without native TTL) is correct: freshness is decided here, from the entry,
with ``now`` passed in. The body is kept exactly as it is served for a
non-streamed hit (the upstream's JSON bytes), last, so a decoded entry's body
is a ``memoryview`` of the stored bytes: a hit sends the store's own bytes, not a
copy (copying a 100 KB body was 13% of such a hit's time). Streamed hits are rendered
from it once (:class:`~reprise.core.replay_memo.ReplayMemo`).

An entry may also carry a chat stream's own events (``recording``, see
:mod:`reprise.core.chunk_record`): kept when merging the stream into its plain answer lost
values the provider sent per chunk, so that a streamed hit sends them as they came.

Layout (little-endian)::

    b"RPE1" | created_at f64 | expires_at f64 (0 = never) | meta_len u32 | meta JSON | body
    b"RPE2" | created_at f64 | expires_at f64 (0 = never) | meta_len u32 | recording_len u32
            | meta JSON | recording | body

An entry without a recording is written as ``RPE1``, as before recordings existed: a store
shared with an older Reprise still serves it there; one with a recording is an unknown
entry to that version (a miss), never a body it would misread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"RPE1"
MAGIC_RECORDED = b"RPE2"
_HEADER = struct.Struct("<4sddI")
_RECORDING_LEN = struct.Struct("<I")


class EntryFormatError(ValueError):
    """Bytes that are not an entry (corrupt, truncated or foreign): treated as a miss."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer. ``meta`` holds what admin views need (model, preview, usage)."""

    body: bytes | memoryview
    """Exactly the bytes served for a non-streamed hit. A decoded entry's body is a
    ``memoryview`` of the stored bytes (no copy: a hit sends the store's own bytes)."""
    created_at: float
    expires_at: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    recording: bytes | memoryview = b""
    """A chat stream's events, compressed, for streamed hits (:mod:`reprise.core.chunk_record`);
    empty when the body replays losslessly. A decoded one is a view of the stored bytes."""

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def ttl_left(self, now: float) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - now)


def encode_entry(entry: CacheEntry) -> bytes:
    meta = orjson.dumps(entry.meta) if entry.meta else b""
    if not entry.recording:
        header = _HEADER.pack(MAGIC, entry.created_at, entry.expires_at or 0.0, len(meta))
        return b"".join((header, meta, entry.body))
    header = _HEADER.pack(MAGIC_RECORDED, entry.created_at, entry.expires_at or 0.0, len(meta))
    return b"".join((header, _RECORDING_LEN.pack(len(entry.recording)), meta, entry.recording, entry.body))


def decode_entry(data: bytes) -> CacheEntry:
    """Decode bytes from a store; raise :class:`EntryFormatError` on anything malformed."""
    if len(data) < _HEADER.size:
        raise EntryFormatError("entry shorter than its header")
    magic, created, expires, meta_len = _HEADER.unpack_from(data)
    start = _HEADER.size
    recording_len = 0
    if magic != MAGIC:
        if magic != MAGIC_RECORDED:
            raise EntryFormatError("not a Reprise entry")
        if len(data) < start + _RECORDING_LEN.size:
            raise EntryFormatError("entry truncated")
        (recording_len,) = _RECORDING_LEN.unpack_from(data, start)
        start += _RECORDING_LEN.size
    body_start = start + meta_len + recording_len
    if body_start > len(data):
        raise EntryFormatError("entry truncated")
    try:
        meta = orjson.loads(data[start : start + meta_len]) if meta_len else {}
    except orjson.JSONDecodeError as exc:
        raise EntryFormatError("entry metadata is not JSON") from exc
    view = memoryview(data)
    return CacheEntry(
        body=view[body_start:],
        created_at=created,
        expires_at=expires or None,
        meta=meta,
        recording=view[start + meta_len : body_start] if recording_len else b"",
    )


def read_times(data: bytes) -> tuple[float, float | None]:
    """Creation and expiry without decoding the rest (used by stores that evict)."""
    if len(data) < _HEADER.size or data[:4] not in (MAGIC, MAGIC_RECORDED):
        raise EntryFormatError("not a Reprise entry")
    _, created, expires, _ = _HEADER.unpack_from(data)
    return created, expires or None
