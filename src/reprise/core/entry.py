"""The stored form of one cached answer, and its byte encoding.

An entry carries its own creation and expiry times, so any store (with or
without native TTL) is correct: freshness is decided here, from the entry,
with ``now`` passed in. The body is kept exactly as it is served for a
non-streamed hit (the upstream's JSON bytes), last, so a decoded entry's body
is a ``memoryview`` of the stored bytes: a hit sends the store's own bytes, not a
copy (copying a 100 KB body was 13% of such a hit's time). Streamed hits are rendered
from it once (:class:`~reprise.core.streaming.ReplayMemo`).

Layout (little-endian)::

    b"RPE1" | created_at f64 | expires_at f64 (0 = never) | meta_len u32 | meta JSON | body
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"RPE1"
_HEADER = struct.Struct("<4sddI")


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

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def ttl_left(self, now: float) -> float | None:
        return None if self.expires_at is None else max(0.0, self.expires_at - now)


def encode_entry(entry: CacheEntry) -> bytes:
    meta = orjson.dumps(entry.meta) if entry.meta else b""
    header = _HEADER.pack(MAGIC, entry.created_at, entry.expires_at or 0.0, len(meta))
    return b"".join((header, meta, entry.body))


def decode_entry(data: bytes) -> CacheEntry:
    """Decode bytes from a store; raise :class:`EntryFormatError` on anything malformed."""
    if len(data) < _HEADER.size:
        raise EntryFormatError("entry shorter than its header")
    magic, created, expires, meta_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EntryFormatError("not a Reprise entry")
    start = _HEADER.size
    if start + meta_len > len(data):
        raise EntryFormatError("entry truncated")
    try:
        meta = orjson.loads(data[start : start + meta_len]) if meta_len else {}
    except orjson.JSONDecodeError as exc:
        raise EntryFormatError("entry metadata is not JSON") from exc
    return CacheEntry(
        body=memoryview(data)[start + meta_len :],
        created_at=created,
        expires_at=expires or None,
        meta=meta,
    )


def read_times(data: bytes) -> tuple[float, float | None]:
    """Creation and expiry without decoding the rest (used by stores that evict)."""
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise EntryFormatError("not a Reprise entry")
    _, created, expires, _ = _HEADER.unpack_from(data)
    return created, expires or None
