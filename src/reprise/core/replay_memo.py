"""The SSE a stored chat answer is sent as on a streamed hit, made once per entry.

A stored chat answer is its plain JSON, sometimes with the provider's own events beside it
(:mod:`reprise.core.chunk_record`, when merging the stream lost per-chunk values). A
streamed hit sends those events, else the JSON rendered as chunks
(:func:`~reprise.core.sse_replay.render_sse`); either way the bytes are made once and kept.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson

from reprise.core.chunk_record import replay_recording
from reprise.core.sse_replay import render_sse

_Replay = tuple[bytes, int, bytes, bytes]
"""The stored object the answer came from, the answer's length, a recording held apart, the SSE."""


def replay(answer: bytes | memoryview, include_usage: bool, recording: bytes | memoryview = b"") -> bytes:
    """The SSE for a stored chat ``answer``: its ``recording`` when it has one (and it reads),
    else the answer rendered as chunks."""
    if recording:
        sse = replay_recording(recording, include_usage)
        if sse is not None:
            return sse
    return render_sse(orjson.loads(answer), include_usage)


class ReplayMemo:
    """The SSE replay of a stored answer, made once: a streamed hit then sends bytes ready to go.

    Kept per storage ``key`` and usage choice, least recently used first out, and bounded
    in bytes: each replay counts with the answer bytes it holds (at most ``max_bytes``, by
    default the default size of a ``local`` cache; one replay at most a sixteenth).

    A replay is sent only for the very answer it was made from: the same bytes object,
    or equal bytes, else it is made again (an overwritten entry, another semantic match).
    An answer given as a ``memoryview`` is a tail of its object, as
    :func:`~reprise.core.entry.decode_entry` makes it: the whole object is what is compared
    (a ``bytes`` comparison: ~2 µs for 100 KB, where hashing them cost ~100 µs and
    comparing views ~270 µs), so two stored entries with the same body but not the same
    times render twice, and never two bodies share a replay. A recording that is not a view
    of that same object (a shared answer's, not an entry's) is compared as well.
    """

    MAX_BYTES = 256 * 2**20

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._sse: OrderedDict[tuple[str, bool], _Replay] = OrderedDict()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """What the held replays count for (their bytes and the answers' they hold)."""
        return self._bytes

    def render(self, key: str | None, answer: bytes | memoryview, include_usage: bool,
               recording: bytes | memoryview = b"") -> bytes:
        """:func:`replay` of the JSON ``answer`` stored under ``key`` (with its ``recording``),
        from the memo when it was made before."""
        if key is None:
            return replay(answer, include_usage, recording)
        origin = answer.obj if isinstance(answer, memoryview) else answer
        if not isinstance(origin, bytes):  # a view of something else: compared as a copy
            origin = answer = bytes(answer)
        apart = _apart(recording, origin)
        slot = (key, include_usage)
        known = self._sse.get(slot)
        if (known is not None and (known[0] is origin or known[0] == origin) and known[1] == len(answer)
                and known[2] == apart):
            self._sse.move_to_end(slot)
            return known[3]
        sse = replay(answer, include_usage, recording)
        self._keep(slot, (origin, len(answer), apart, sse))
        return sse

    def _keep(self, slot: tuple[str, bool], made: _Replay) -> None:
        old = self._sse.pop(slot, None)
        if old is not None:
            self._bytes -= _size(old)
        size = _size(made)
        if size > self.max_bytes // 16:
            return
        self._sse[slot] = made
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, dropped = self._sse.popitem(last=False)
            self._bytes -= _size(dropped)


def _apart(recording: bytes | memoryview, origin: bytes) -> bytes:
    """What of a recording the memo compares beside ``origin``: nothing for an entry's (a view
    of ``origin`` itself), a shared answer's recording whole."""
    if isinstance(recording, memoryview):
        return b"" if recording.obj is origin else bytes(recording)
    return recording


def _size(made: _Replay) -> int:
    return len(made[0]) + len(made[2]) + len(made[3])
