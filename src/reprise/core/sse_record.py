"""Raw server-sent event streams kept byte for byte: the Responses API's and legacy completions'.

Why not reassemble them as chat streams are (:mod:`reprise.core.streaming`)? A chat
stream is stored as the equivalent plain answer so that plain and streamed requests
share an entry. The Responses API streams *typed* events (``response.created``,
``response.output_item.added``, ``response.output_text.delta`` ... with a
``sequence_number`` each) that no plain answer can give back faithfully, and legacy
completions are rarely streamed at all. So these streams are stored as the exact
sequence of events the client was sent, and a hit replays those bytes in order.
``stream`` is part of these routes' keys: a plain and a streamed request are two entries.

A recorder tells the driver when the stream reached its last event (:attr:`done`, so
the driver can hold that event back until the answer is stored) and whether what it
saw is a complete, valid answer worth storing (:attr:`complete`):

* Responses API (https://platform.openai.com/docs/api-reference/responses-streaming):
  complete only when a ``response.completed`` event arrived whose ``response.status`` is
  ``"completed"``, every event's data was a JSON object, and no ``error``,
  ``response.failed`` or ``response.incomplete`` event came. Those three end a stream
  too (``done``) but are never stored; neither is a stream cut before its end.
* Legacy completions (https://platform.openai.com/docs/api-reference/completions):
  complete only when ``data: [DONE]`` arrived, every payload was a JSON object shaped as
  a chunk (``choices``, or the usage chunk), no event reported a failure (named ``error``,
  carrying ``error``, or vLLM's ``"object": "error"``), and every choice seen got a
  ``finish_reason``.

Recording is bounded (:data:`MAX_RECORDED_BYTES`, see :mod:`reprise.core.answer_bounds`):
a longer stream is still forwarded, but not stored, and so is one event longer than the
bound (passed on as its bytes come, never held whole; its name, read from its first bytes,
still says whether it ended the stream).

A Responses stream may end with ``data: [DONE]`` after its last event, as some
OpenAI-compatible servers send it: it is kept with the events and replayed as it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.core.answer_bounds import MAX_RECORDED_BYTES
from reprise.core.sse_events import SseEvents, is_failure, read_event
from reprise.core.streaming import is_chunk

__all__ = ["MAX_RECORDED_BYTES", "CompletionsRecorder", "ResponsesRecorder", "SseRecorder"]

_HEAD_BYTES = 4096
#: An event's name (``event:``), else the ``type`` its data begins with, as OpenAI writes it.
_KIND = re.compile(rb'^event: ?(\S+)|^data: ?\{\s*"type"\s*:\s*"([^"\\]+)"', re.MULTILINE)
RESPONSE_ENDS = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})


@dataclass(slots=True)
class SseRecorder:
    """Splits upstream bytes into whole events, forwards all of them, and keeps them in order.

    Subclasses judge each event's JSON data (:meth:`_judge`) and say when the answer is whole.
    """

    done: bool = False
    """The stream's last event arrived (held back by the driver until the answer is stored)."""
    malformed: bool = False
    """An event's data was not a JSON object of the expected shape, or reported a failure."""
    overflow: bool = False
    """More than :data:`MAX_RECORDED_BYTES` arrived: forwarded, not stored."""
    _events: SseEvents = field(default_factory=SseEvents)
    _kept: list[bytes] = field(default_factory=list)
    _size: int = 0
    _spilled: bytes | None = None
    """The head of an event longer than the bound, passed on as it comes: judged when it ends."""

    def feed(self, data: bytes) -> list[bytes]:
        """Add raw bytes; return the whole events (with their blank line) to forward."""
        events = self._events.split(data)
        for block in events:
            self._size += len(block)
            if self._spilled is not None:  # the end of the long event passed on as it came
                self._judge_head(self._spilled)
                self._spilled = None
                continue
            name, payload = read_event(block)
            if payload is not None:
                self._take(name, payload)
            elif name == b"error":
                self.malformed = True
            if self._size > MAX_RECORDED_BYTES:
                self.overflow = True
                self._kept.clear()
            elif not self.overflow:
                self._kept.append(block)
        spilled = self._events.spill(MAX_RECORDED_BYTES)
        if spilled is not None:  # one event longer than anything kept: never held whole
            self.overflow = True
            self._kept.clear()
            if self._spilled is None:
                self._spilled = spilled[:_HEAD_BYTES]
            events.append(spilled)
        return events

    def _judge_head(self, head: bytes) -> None:
        """An event too long to parse has ended; ``head`` is its start (its name, its type)."""

    def _take(self, name: bytes | None, payload: bytes) -> None:
        if payload.strip() == b"[DONE]":
            self._judge_done()
            return
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.malformed = True
            return
        self._judge(data)
        if name == b"error":  # whatever its data says, and after whatever came before
            self.malformed = True

    def _judge(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _judge_done(self) -> None:
        self.malformed = True  # only streams that end with [DONE] accept it

    @property
    def whole(self) -> bool:
        """What the subclass requires of a complete answer, beyond being well formed."""
        raise NotImplementedError

    def completion(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        """The stream ended normally with a complete answer: safe to store."""
        return self.done and not self.malformed and not self.overflow and self.whole

    def recorded(self) -> bytes:
        """The events as they were forwarded, in order: the entry's body."""
        return b"".join(self._kept)

    def stored_body(self, completion: dict[str, Any]) -> bytes:
        """The entry's body: the events as recorded (``completion`` only describes them)."""
        return self.recorded()

    def recording(self) -> bytes:
        """Nothing beside the body: the body is the events."""
        return b""

    def unstored_body(self) -> bytes | None:
        """The events of a stream that reached its last event but may not be stored (failed,
        incomplete): the provider's whole answer, sent as it is to the requests waiting for it.
        None when the stream was cut or too long to keep."""
        return self.recorded() if self.done and not self.overflow else None


@dataclass(slots=True)
class ResponsesRecorder(SseRecorder):
    """The Responses API's typed events; the answer is ``response.completed``'s ``response``."""

    final: dict[str, Any] | None = None
    """The ``response`` object of a ``response.completed`` event whose status is ``completed``
    and whose ``error`` is null (a completed status beside an error is the provider's failure)."""

    def _judge(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if not isinstance(kind, str):
            self.malformed = True
            return
        if kind in RESPONSE_ENDS:
            self.done = True
            response = data.get("response")
            if (kind == "response.completed" and isinstance(response, dict)
                    and response.get("status") == "completed" and response.get("error") is None):
                self.final = response
            else:
                self.malformed = True

    def _judge_done(self) -> None:
        # Some OpenAI-compatible servers end a Responses stream with ``data: [DONE]`` after its
        # last event, as chat streams end: accepted there (and kept, so a hit replays it as it
        # came), a failure anywhere else.
        if not self.done:
            self.malformed = True

    def _judge_head(self, head: bytes) -> None:
        # A ``response.completed`` repeats the whole output: past the bound it is the one event
        # too long to parse. Its name still says the stream ended (forwarded whole, never stored).
        found = _KIND.search(head)
        kind = found and (found.group(1) or found.group(2))
        if kind and kind.decode(errors="replace") in RESPONSE_ENDS:
            self.done = True

    @property
    def whole(self) -> bool:
        return self.final is not None

    def completion(self) -> dict[str, Any]:
        """The completed ``response`` object (for the entry's metadata)."""
        return self.final or {}


@dataclass(slots=True)
class CompletionsRecorder(SseRecorder):
    """Legacy ``text_completion`` chunks ending with ``data: [DONE]``."""

    _finished: dict[int, bool] = field(default_factory=dict)
    _top: dict[str, Any] = field(default_factory=dict)

    def _judge(self, data: dict[str, Any]) -> None:
        if is_failure(None, data) or not is_chunk(data):
            self.malformed = True
            return
        for name in ("model", "usage"):
            if data.get(name) is not None:
                self._top[name] = data[name]
        choices = data.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            self.malformed = True
            return
        for choice in choices:
            index = choice.get("index", 0) if isinstance(choice, dict) else None
            if type(index) is not int:
                self.malformed = True
                continue
            assert isinstance(choice, dict)
            self._finished[index] = self._finished.get(index, False) or bool(choice.get("finish_reason"))

    def _judge_done(self) -> None:
        self.done = True

    @property
    def whole(self) -> bool:
        return bool(self._finished) and all(self._finished.values())

    def completion(self) -> dict[str, Any]:
        """The model and usage seen (for the entry's metadata)."""
        return dict(self._top)
