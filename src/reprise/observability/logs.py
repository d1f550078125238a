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


class AccessLog:
    """Writes access lines to stderr in batches, bypassing ``logging`` on the hot path.

    ``logging`` costs ~20 µs a record (record object, lock, a flush per line); a cache
    hit costs ~15 µs in all. Lines are queued and written with one ``write`` at the end
    of the current event-loop iteration (``call_soon``), so under load one write
    carries many lines and when idle a line appears at once. Text lines keep the
    ``logging`` layout (``time LEVEL reprise.access: ...``).
    """

    def __init__(self, json_lines: bool, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.json_lines = json_lines
        self.enabled = enabled
        self._stream = stream
        self._pending: list[str] = []
        self._stamp_second = -1
        self._stamp = ""

    def _prefix(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d} INFO {ACCESS_LOGGER}: "

    def emit(self, line: str) -> None:
        if not self.json_lines:
            line = self._prefix() + line
        self._pending.append(line)
        if len(self._pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tests, CLI): write now
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
    return " ".join([f"{k}={_logfmt(v)}" for k, v in fields.items() if v is not None])


_UNSAFE = frozenset(' "=\\')


def _logfmt(value: Any) -> str:
    if type(value) is int or type(value) is float:
        return str(value)
    text = value if isinstance(value, str) else str(value)
    if text and text.isprintable() and _UNSAFE.isdisjoint(text):
        return text
    return orjson.dumps(text).decode()
