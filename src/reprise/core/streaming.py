"""Server-sent events for chat completions: reassemble an upstream stream, render a stored one.

Why: a streamed and a non-streamed request for one prompt share one entry, stored as the
non-streamed ``chat.completion`` JSON. A cache must give back what the provider gave,
whichever way it was asked and answered, including fields we have never heard of
(``reasoning_content`` from DeepSeek and vLLM, legacy ``function_call``, ``x_groq``...).

What is promised:

* :class:`StreamAssembler` reads an upstream ``chat.completion.chunk`` stream in time linear
  in its size, whatever the chunking, forwards its events unchanged (line ends normalised
  to ``\\n``) and merges it losslessly, per choice ``index``, by OpenAI's rules
  (https://platform.openai.com/docs/api-reference/chat-streaming):

  - in ``delta``, strings are concatenated in arrival order (``content``, ``refusal``,
    ``reasoning_content``, unknown ones), lists appended (a value switching between a string
    and a list becomes a list of parts, each run of strings one ``{"type": "text"}`` part in
    its place: Magistral streams thinking as parts, then text), objects merged recursively by
    these rules, other values replaced by the last non-null one; ``role``, ``id`` and
    ``type`` are identifiers, never concatenated (the first non-empty one is kept);
    ``tool_calls`` merge per their own ``index`` (a call without one continues the last
    call, or starts a new one when it brings a new ``id`` or follows another item of the
    same delta's list); ``content`` is ``null`` when no content arrived (OpenAI's
    tool-call-only answers);
  - a choice's ``logprobs`` merge as a delta does (``content``/``refusal`` lists
    concatenated); its other fields (``finish_reason``, vLLM's ``stop_reason``, unknown
    ones) and every top-level field (``usage`` whole) keep their last non-null value.
    When one of these came with another non-null value in an earlier chunk (OpenAI's
    per-chunk ``obfuscation``, a vendor's counter, usage on every chunk), the merge lost it:
    the assembler is then :attr:`~StreamAssembler.lossy` and its
    :meth:`~StreamAssembler.recording` (the events as they came, compressed; see
    :mod:`reprise.core.chunk_record`) is stored beside the answer for streamed hits.

  It is :attr:`~StreamAssembler.complete` only when ``data: [DONE]`` was seen, every
  ``data:`` payload was a JSON object shaped as a chunk (``choices``, or the usage chunk),
  no event reported a failure (named ``error``, carrying ``error``, or ``"object": "error"``
  as vLLM sends), and every choice (at least one) has a ``finish_reason``. A failure after
  a finished answer is still a failure: the provider did not stand by it. Objects nested
  deeper than ``_MAX_DEPTH`` are kept whole; a chunk nested deeper than JSON can be written
  back (``_MAX_NESTING``) is malformed.
  It holds at most :data:`~reprise.core.answer_bounds.MAX_RECORDED_BYTES` of a stream:
  a longer one is still forwarded, but not merged, so never stored (:attr:`~StreamAssembler.overflow`).
* :func:`~reprise.core.sse_replay.render_sse` is its inverse up to chunk boundaries: ``assemble(render_sse(c, True))
  == c`` for any chat completion ``c`` with distinct choice indexes, except that a message
  without ``role`` gets ``"assistant"``, a missing ``content`` or ``usage`` comes back as
  ``null``, and an ``index`` key inside a plain answer's tool call is replaced by its
  position (the stream's own addressing). ``tests/core/test_replay_property.py`` checks it.
  It is what a streamed hit sends when no recording was kept (a plain answer, a stream whose
  chunks agree); :mod:`reprise.core.replay_memo` makes that choice, once per entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.core.answer_bounds import MAX_RECORDED_BYTES
from reprise.core.chunk_record import MAX_REPLAY_BYTES, ChunkRecording
from reprise.core.sse_events import SseEvents, is_failure, read_event

_IDENTIFIERS = frozenset({"role", "id", "type"})
_MAX_DEPTH = 32
_MAX_NESTING = 254  # orjson writes no deeper: an answer nested deeper could not be stored


# -- merged values: parts kept apart until the end, joined once -----------------------------

class _Fields(dict[str, Any]):
    """An object being merged; its values are raw JSON or the merge types below."""


class _Text:
    __slots__ = ("parts",)

    def __init__(self, first: str) -> None:
        self.parts = [first]

    @classmethod
    def grow(cls, held: Any, more: str) -> _Text | _Items:
        """``held`` with ``more`` appended, or a new text if ``held`` is neither a text nor a list.

        After a list, ``more`` becomes a text part at its end: content may switch from parts to
        strings (Mistral's Magistral streams its thinking as parts, then the answer as text),
        and neither may be lost."""
        if isinstance(held, _Items):
            held.add_text(more)
            return held
        if not isinstance(held, _Text):
            return cls(more)
        held.parts.append(more)
        return held


class _Items:
    __slots__ = ("items", "texts")

    def __init__(self, first: list[Any]) -> None:
        self.items = list(first)
        self.texts = False  # some items are held strings (_Text), made text parts at the end

    @classmethod
    def grow(cls, held: Any, more: list[Any]) -> _Items:
        """``held`` with ``more`` appended, or a new list if ``held`` is not one; a held text
        becomes the list's first part rather than be dropped (see :meth:`_Text.grow`)."""
        if isinstance(held, _Text):
            merged = cls([held, *more])
            merged.texts = True
            return merged
        if not isinstance(held, _Items):
            return cls(more)
        held.items.extend(more)
        return held

    def add_text(self, more: str) -> None:
        last = self.items[-1] if self.items else None
        if isinstance(last, _Text):
            last.parts.append(more)
        else:
            self.items.append(_Text(more))
            self.texts = True

    def final(self) -> list[Any]:
        if not self.texts:
            return self.items
        out: list[Any] = []
        for item in self.items:
            if not isinstance(item, _Text):
                out.append(item)
            elif text := "".join(item.parts):  # an empty one (a role chunk's ``content: ""``) says nothing
                out.append({"type": "text", "text": text})
        return out


class _Calls:
    """``tool_calls``: one merged object per call ``index``."""

    __slots__ = ("by_index", "last", "top")

    def __init__(self) -> None:
        self.by_index: dict[int, _Fields] = {}
        self.last = 0
        self.top = -1

    def slot(self, item: dict[str, Any], new: bool = False) -> _Fields:
        """The call ``item`` continues: by its ``index``, else the last one unless its ``id`` is
        new or it is ``new`` (a later item of the same delta's list: two items of one list are
        two calls, a continuation only makes sense across deltas)."""
        index = item.get("index")
        if type(index) is not int:
            current = self.by_index.get(self.last)
            fresh = new or (item.get("id") and current is not None and current.get("id") not in (None, "", item["id"]))
            index = self.top + 1 if fresh else self.last
        self.last, self.top = index, max(self.top, index)
        return self.by_index.setdefault(index, _Fields())


def _merge(held: _Fields, delta: dict[str, Any], depth: int = 0) -> bool:
    """Merge one delta object into ``held`` by the module's rules; False if it is malformed."""
    ok = True
    for key, value in delta.items():
        current = held.get(key)
        if type(current) is _Text and type(value) is str:  # the common case, inlined
            current.parts.append(value)
        else:
            ok = _merge_field(held, key, value, depth) and ok
    return ok


def _merge_field(held: _Fields, key: str, value: Any, depth: int) -> bool:
    current = held.get(key)
    if value is None:
        held.setdefault(key, None)
    elif key in _IDENTIFIERS:
        if current is None or current == "":
            held[key] = value
    elif isinstance(value, str):
        held[key] = _Text.grow(current, value)
    elif isinstance(value, list) and key != "tool_calls":
        held[key] = _Items.grow(current, value)
    elif isinstance(value, dict) and depth < _MAX_DEPTH:
        if not isinstance(current, _Fields):
            current = held[key] = _Fields()
        return _merge(current, value, depth + 1)
    elif isinstance(value, list):  # tool_calls
        if not isinstance(current, _Calls):
            current = held[key] = _Calls()
        return _merge_calls(current, value, depth + 1)
    else:
        held[key] = value
    return True


def _replaces(held: _Fields, delta: dict[str, Any]) -> bool:
    """Whether merging ``delta`` drops a value ``held`` has: a number or flag that changes (the
    merge keeps the last), or an identifier that changes (it keeps the first). Strings join and
    lists extend, so text is never lost; only the delta's own level is looked at (one short
    loop per chunk: its keys are usually just ``content``)."""
    for key, value in delta.items():
        if value is None or type(value) is dict or type(value) is list:
            continue
        if type(value) is str and key not in _IDENTIFIERS:
            continue
        current = held.get(key)
        if current is not None and current != "" and current != value:
            return True
    return False


def _merge_calls(calls: _Calls, items: list[Any], depth: int) -> bool:
    ok = True
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            ok = False
            continue
        ok = _merge(calls.slot(item, position > 0), {k: v for k, v in item.items() if k != "index"}, depth) and ok
    return ok


def _final(value: Any) -> Any:
    """The plain JSON value of a merged one."""
    if isinstance(value, _Text):
        return "".join(value.parts)
    if isinstance(value, _Fields):
        return {key: _final(item) for key, item in value.items()}
    if isinstance(value, _Items):
        return value.final()
    if isinstance(value, _Calls):
        return [_final(value.by_index[i]) for i in sorted(value.by_index)]
    return value


# -- the event stream (split and read by reprise.core.sse_events) ------------------------

def is_chunk(data: dict[str, Any]) -> bool:
    """Whether ``data`` is shaped as a streamed chunk: it has ``choices`` (an empty list is
    Azure's filter results or the usage chunk) or is the usage chunk without them. Anything
    else in a stream is no part of an answer, whatever the provider meant by it."""
    return data.get("choices") is not None or data.get("usage") is not None


def _too_deep(payload: bytes, chunk: dict[str, Any]) -> bool:
    """Whether ``chunk`` nests deeper than ``_MAX_NESTING`` (walked only when it might)."""
    if payload.count(b"{") + payload.count(b"[") <= _MAX_NESTING:
        return False
    stack: list[tuple[Any, int]] = [(chunk, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > _MAX_NESTING:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


@dataclass(slots=True)
class _Choice:
    message: _Fields = field(default_factory=_Fields)
    merged: _Fields = field(default_factory=_Fields)  # holds "logprobs", merged as a delta is
    fields: dict[str, Any] = field(default_factory=dict)  # finish_reason and the rest: last wins

    def final(self, index: int) -> dict[str, Any]:
        rest = _final(self.message)
        message = {"role": rest.pop("role", None) or "assistant", "content": rest.pop("content", None), **rest}
        out: dict[str, Any] = {"index": index, "message": message}
        if "logprobs" in self.merged:
            out["logprobs"] = _final(self.merged["logprobs"])
        out["finish_reason"] = self.fields.get("finish_reason")
        out.update((k, v) for k, v in self.fields.items() if k != "finish_reason")
        return out


@dataclass(slots=True)
class StreamAssembler:
    """Consumes upstream SSE bytes; yields the events to forward and keeps the whole answer.

    ``drop_usage_chunk`` withholds the usage-only chunk (``choices: []``) that Reprise
    asked upstream for on the client's behalf when the client did not ask for it; its
    usage is still kept in :meth:`completion`.
    """

    drop_usage_chunk: bool = False
    done: bool = False
    """``data: [DONE]`` was seen."""
    malformed: bool = False
    """A ``data:`` payload was not a JSON object of the chunk's shape, or an event reported a failure."""
    overflow: bool = False
    """More than :data:`MAX_RECORDED_BYTES` arrived, or a lossy stream more events than its
    recording keeps (:data:`MAX_REPLAY_BYTES`): forwarded, not kept (never stored nor shared)."""
    lossy: bool = False
    """A top-level or choice-level field came with different values in different chunks: the
    merge keeps the last, so the events are kept too (:meth:`recording`)."""
    _events: SseEvents = field(default_factory=SseEvents)
    _recording: ChunkRecording | None = field(default_factory=ChunkRecording)
    _recorded: int = 0
    """Event bytes given to the recording; past :data:`MAX_REPLAY_BYTES` it is let go."""
    _top: dict[str, Any] = field(default_factory=dict)
    _choices: dict[int, _Choice] = field(default_factory=dict)
    _size: int = 0
    _spilling: bool = False
    """An event longer than the bound is being passed on as it comes (its end is not parsed)."""

    def feed(self, data: bytes) -> list[bytes]:
        """Add raw bytes; return the complete events (with their blank line) to forward.

        Bounded (:data:`MAX_RECORDED_BYTES`): past it the answer is no longer merged, and one
        event longer than it is forwarded as its bytes arrive, never held whole."""
        self._size += len(data)
        if self._size > MAX_RECORDED_BYTES and not self.overflow:
            self._drop_answer()
        events = self._events.split(data)
        if self._spilling and events:  # the first event to end is the long one passed on
            self._spilling = False
            out = [events[0]]
            out.extend(block for block in events[1:] if self._take_event(block))
        else:
            out = [block for block in events if self._take_event(block)]
        spilled = self._events.spill(MAX_RECORDED_BYTES)
        if spilled is not None:
            self._spilling = True
            self._drop_answer()
            out.append(spilled)
        return out

    def _drop_answer(self) -> None:
        """Too long to keep: stop merging and let go of what was merged (events still pass)."""
        self.overflow = True
        self._top.clear()
        self._choices.clear()
        self._recording = None

    def _take_event(self, block: bytes) -> bool:
        """Absorb and record one event; return whether to forward it."""
        usage_only = self._read(block)
        if self._recording is not None:
            self._recorded += len(block)
            if self._recorded > MAX_REPLAY_BYTES:
                self._recording = None
            else:
                self._recording.add(block, usage_only)
        if self.lossy and self._recording is None and not self.overflow:
            self._drop_answer()  # values the merge lost and no events to give them back: never stored
        return not (usage_only and self.drop_usage_chunk)

    def _read(self, block: bytes) -> bool:
        """Absorb one event; return whether it is the usage-only chunk."""
        name, payload = read_event(block)
        if payload is None:
            self.malformed = self.malformed or name == b"error"
            return False  # comments / keep-alives / event names pass through
        if payload.strip() == b"[DONE]":
            self.done = True
            return False
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict) or _too_deep(payload, chunk):
            self.malformed = True
            return False
        if is_failure(name, chunk) or not is_chunk(chunk):
            self.malformed = True  # forwarded as it came, never merged into the answer
        elif not self.overflow:
            self._absorb(chunk)
        return not chunk.get("choices") and chunk.get("usage") is not None

    def _absorb(self, chunk: dict[str, Any]) -> None:
        top = self._top
        for key, value in chunk.items():
            if value is not None:
                held = top.get(key)
                if held is not None and held != value and key != "object":
                    self.lossy = True  # a per-chunk value: only the last is merged
                top[key] = value
            elif key not in top:
                top[key] = value
        choices = top.pop("choices", None)
        if "object" in top:
            top["object"] = "chat.completion"
        if choices is not None and not isinstance(choices, list):
            self.malformed = True
            return
        for raw in choices or ():
            self._absorb_choice(raw)

    def _absorb_choice(self, raw: Any) -> None:
        index = raw.get("index", 0) if isinstance(raw, dict) else None
        if type(index) is not int:  # not a bool either
            self.malformed = True
            return
        choice = self._choices.get(index) or self._choices.setdefault(index, _Choice())
        fields, ok = choice.fields, True
        for key, value in raw.items():
            if key == "delta":
                if isinstance(value, dict):
                    if not self.lossy and _replaces(choice.message, value):
                        self.lossy = True  # a per-chunk number, flag or identifier in the delta
                    ok = _merge(choice.message, value) and ok
                else:
                    ok = value is None and ok
            elif key == "logprobs":
                ok = (value is None and key in choice.merged or _merge(choice.merged, {key: value})) and ok
            elif key != "index" and (value is not None or key not in fields):
                if value is not None and fields.get(key) not in (None, value):
                    self.lossy = True
                fields[key] = value
        self.malformed = self.malformed or not ok

    @property
    def complete(self) -> bool:
        """The stream ended normally: safe to store (see the module docstring)."""
        return (
            self.done
            and not self.malformed
            and not self.overflow
            and bool(self._choices)
            and all(c.fields.get("finish_reason") for c in self._choices.values())
        )

    def stored_body(self, completion: dict[str, Any]) -> bytes:
        """A chat stream is stored as its plain answer (the two share an entry)."""
        return orjson.dumps(completion)

    def unstored_body(self) -> bytes | None:
        """An unstorable chat stream is a broken one: nothing whole to share."""
        return None

    def recording(self) -> bytes:
        """The events as they came, compressed (:mod:`reprise.core.chunk_record`), when the
        merge lost per-chunk values (:attr:`lossy`); empty when :func:`~reprise.core.sse_replay.render_sse` of the
        merged answer gives every value back."""
        if not self.lossy or self._recording is None:
            return b""
        return self._recording.finish()

    def completion(self) -> dict[str, Any]:
        """The non-streamed ``chat.completion`` equivalent of what was received."""
        out = dict(self._top)
        usage = out.pop("usage", _ABSENT)
        out.setdefault("object", "chat.completion")
        out["choices"] = [choice.final(i) for i, choice in sorted(self._choices.items())]
        if usage is not _ABSENT:
            out["usage"] = usage
        return out


_ABSENT = object()
