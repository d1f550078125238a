"""One line per request on the ``reprise.access`` logger, as logfmt or JSON.

The line names the request id (also sent as ``x-request-id``), caller key id,
model, cache outcome, stored key, status and server latency. It never carries an
API key (only the 12-hex key id of a virtual key, a hash prefix), and never prompt
text unless the operator sets ``general_settings.log_prompts: true``.

Lines go straight to stderr (not through the root logging setup, which
``uvicorn --workers`` children leave to uvicorn), so with JSON on, each line is
exactly one JSON object.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

import orjson

ACCESS_LOGGER = "reprise.access"


#: How long a line may wait for others to share its ``write`` (seconds), and how many may wait.
FLUSH_DELAY = 0.05
FLUSH_LINES = 256


class AccessLog:
    """Writes access lines to stderr in batches, bypassing ``logging`` on the hot path.

    ``logging`` costs ~20 µs a record (record object, lock, a flush per line); a cache
    hit costs ~15 µs in all. Lines are queued and written with one ``write`` at most
    :data:`FLUSH_DELAY` after the first of them (or at once when :data:`FLUSH_LINES`
    wait), so under load one system call carries hundreds of lines, and a line is never
    later than 50 ms. A write per event-loop iteration (the earlier design) still cost a
    system call per one or two hits under load. :meth:`flush` runs at shutdown too.
    Text lines keep the ``logging`` layout (``time LEVEL reprise.access: ...``).
    """

    def __init__(self, json_lines: bool, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.enabled = enabled
        self._stream = stream
        self._pending: list[str] = []
        self._stamp_second = -1
        self._stamp = ""
        self._prefix_milli = -1
        self._prefix = ""

    def prefix(self, now: float) -> str:
        """The ``logging`` layout's start of a text line written at ``now`` (Unix seconds).

        Memoised per millisecond, its resolution: under load many lines share one."""
        milli = int(now * 1000)
        if milli == self._prefix_milli:
            return self._prefix
        second = milli // 1000
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        self._prefix_milli = milli
        self._prefix = f"{self._stamp},{milli % 1000:03d} INFO {ACCESS_LOGGER}: "
        return self._prefix

    def emit(self, line: str) -> None:
        """Queue one line (a text line gets the ``logging`` layout's prefix for now)."""
        if not self.json_lines:
            line = self.prefix(time.time()) + line
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_later(FLUSH_DELAY, self.flush)
            except RuntimeError:  # no loop (tests, CLI): write now
                self.flush()
        elif len(pending) >= FLUSH_LINES:
            self.flush()  # the timer set by the first line finds nothing left, or the next batch

    def write(self, lines: list[str]) -> None:
        """Write complete lines now, after any queued ones (the observer's batch)."""
        self._pending.extend(lines)
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        stream = self._stream or sys.stderr
        try:
            stream.write("\n".join(lines) + "\n")
            stream.flush()
        except (OSError, ValueError):  # stderr closed: drop the lines, never fail a request
            pass


def format_line(fields: dict[str, Any], json_lines: bool) -> str:
    """``fields`` as one JSON object (with ``ts`` and ``level``) or as logfmt pairs.

    None values are left out; logfmt values with spaces or quotes are quoted.
    """
    if json_lines:
        record = {"ts": round(time.time(), 3), "level": "info", "logger": ACCESS_LOGGER}
        record.update((k, v) for k, v in fields.items() if v is not None)
        return orjson.dumps(record).decode()
    return " ".join([f"{k}={logfmt_value(v)}" for k, v in fields.items() if v is not None])


_UNSAFE = frozenset(' "=\\')
_QUOTED: dict[str, str] = {}
"""Memo of :func:`logfmt_value` for short strings: models, routes, outcomes and hot keys repeat."""


def logfmt_value(value: Any) -> str:
    if type(value) is str:
        done = _QUOTED.get(value)
        if done is not None:
            return done
        text = value
    elif type(value) is int or type(value) is float:
        return str(value)
    else:
        text = str(value)
    done = text if text and text.isprintable() and _UNSAFE.isdisjoint(text) else orjson.dumps(text).decode()
    if len(text) <= 96:
        if len(_QUOTED) >= 4096:  # bounded: clients choose request ids and prompts
            _QUOTED.clear()
        _QUOTED[text] = done
    return done
