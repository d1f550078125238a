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
  complete only when ``data: [DONE]`` arrived, every payload was a JSON object without
  ``error``, and every choice seen got a ``finish_reason``.

Recording is bounded (:data:`MAX_RECORDED_BYTES`): a longer stream is still forwarded,
but not stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.core.streaming import _Events, _payload

#: The most bytes of one stream kept for storing; past it the stream is forwarded, never stored.
MAX_RECORDED_BYTES = 32 * 2**20
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
    _events: _Events = field(default_factory=_Events)
    _kept: list[bytes] = field(default_factory=list)
    _size: int = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add raw bytes; return the whole events (with their blank line) to forward."""
        events = self._events.split(data)
        for block in events:
            payload = _payload(block)
            if payload is not None:
                self._take(payload)
            self._size += len(block)
            if self._size > MAX_RECORDED_BYTES:
                self.overflow = True
                self._kept.clear()
            elif not self.overflow:
                self._kept.append(block)
        return events

    def _take(self, payload: bytes) -> None:
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


@dataclass(slots=True)
class ResponsesRecorder(SseRecorder):
    """The Responses API's typed events; the answer is ``response.completed``'s ``response``."""

    final: dict[str, Any] | None = None
    """The ``response`` object of a ``response.completed`` event whose status is ``completed``."""

    def _judge(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if not isinstance(kind, str):
            self.malformed = True
            return
        if kind in RESPONSE_ENDS:
            self.done = True
            response = data.get("response")
            if kind == "response.completed" and isinstance(response, dict) and response.get("status") == "completed":
                self.final = response
            else:
                self.malformed = True

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
        if data.get("error") is not None:
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
