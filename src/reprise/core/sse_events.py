"""A provider's server-sent events: bytes split into whole events, and each event read.

One splitter for every stream the gateway reads (chat, the Responses and completions
recorders, the ``/v1/messages`` translation), so each treats line ends, a leading byte
order mark and long events alike (https://html.spec.whatwg.org/multipage/server-sent-events.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BOM = b"\xef\xbb\xbf"


def leading_bom(start: bytes | bytearray) -> int | None:
    """How many bytes to drop from a stream's first bytes ``start``: 3 for a UTF-8 byte order
    mark, else 0; None while ``start`` could still be the start of one (wait for more).

    The SSE standard lets a stream begin with a BOM and has readers drop it: left in place it
    hides the first event's ``data:`` line, so the first chunk went missing from the stored
    answer while the client of the miss, which strips it, read it whole.
    """
    if len(start) < len(BOM) and BOM.startswith(start):
        return None
    return len(BOM) if start.startswith(BOM) else 0


@dataclass(slots=True)
class SseEvents:
    """Splits bytes into whole SSE events in linear time: each byte is scanned and moved once.

    Line ends are normalised to ``\\n`` as bytes arrive (a ``\\r\\n`` split between two
    feeds included); only the unfinished event's bytes stay in ``buf``.
    """

    buf: bytearray = field(default_factory=bytearray)
    skip_lf: bool = False
    started: bool = False
    """The stream's first bytes were read and a leading BOM, if any, dropped."""

    def split(self, data: bytes) -> list[bytes]:
        data = self._normalise(data)
        buf = self.buf
        scan = max(len(buf) - 1, 0)  # a blank line may straddle the old and the new bytes
        buf += data
        if not self.started:
            if (drop := leading_bom(buf)) is None:
                return []
            self.started, scan = True, 0
            if drop:
                del buf[:drop]
        events: list[bytes] = []
        start = 0
        with memoryview(buf) as view:
            while (end := buf.find(b"\n\n", scan)) >= 0:
                events.append(bytes(view[start : end + 2]))
                start = scan = end + 2
        if start:
            del buf[:start]
        return events

    def spill(self, limit: int) -> bytes | None:
        """The unfinished event's bytes when more than ``limit`` wait: to pass on as they come
        rather than hold them. The last byte stays, so a blank line split across feeds is still
        seen and the event's end is found."""
        buf = self.buf
        if len(buf) <= limit:
            return None
        spilled = bytes(buf[:-1])
        del buf[:-1]
        return spilled

    def _normalise(self, data: bytes) -> bytes:
        if self.skip_lf and data[:1] == b"\n":
            data = data[1:]
            self.skip_lf = False
        if not data:
            return data
        self.skip_lf = data.endswith(b"\r")
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return data


def read_event(block: bytes) -> tuple[bytes | None, bytes | None]:
    """The event's name (its last ``event:`` line) and data (its ``data:`` lines joined by
    newlines); None for either when it has none. The name matters: a provider may report a
    failure as ``event: error`` with data that looks like nothing in particular."""
    if block.startswith(b"data: ") and block.find(b"\n") == len(block) - 2:
        return None, block[6:-2]  # the common case: one data line
    name, lines = None, []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            lines.append(line[5:])
        elif line.startswith(b"event:"):
            name = line[6:].removeprefix(b" ")
    if not lines:
        return name, None
    return name, b"\n".join(line[1:] if line.startswith(b" ") else line for line in lines)


def is_failure(name: bytes | None, data: dict[str, Any]) -> bool:
    """Whether an event reports a failure rather than carrying part of the answer: named
    ``error``, carrying ``error``, or an error object (vLLM's ``"object": "error"``)."""
    return name == b"error" or data.get("error") is not None or data.get("object") == "error"
