"""Anthropic Messages API answers as OpenAI chat completions: whole, streamed, or errors (pure).

The gateway stores and replays OpenAI's form only, so an Anthropic answer is turned into
a ``chat.completion`` (or ``chat.completion.chunk`` SSE ending in ``data: [DONE]``) here,
as LiteLLM does (https://docs.litellm.ai/docs/providers/anthropic): text blocks joined,
``tool_use`` blocks as ``tool_calls`` (``input`` written as the JSON ``arguments``
string), ``stop_reason`` as ``finish_reason``, ``usage`` as prompt/completion/total with
Anthropic's cache token counts kept beside them. A stop reason that does not end a whole
answer (``pause_turn``, or one unknown here) gives ``finish_reason: null`` and the reason as
``anthropic_stop_reason``: sent to the client, never stored.

What the provider sends that this translation has no place for (a block or delta type it
does not map: ``thinking``, a server tool's result, one added later; a mapped block's key
that holds something, as a text block's ``citations``; an event type added later) is
named in the choice's ``anthropic_untranslated``: the client gets all that could be
translated and learns what it did not get, and the answer is never stored
(:func:`is_whole`, :attr:`StreamTranslator.untranslated`), since a hit must be the
provider's whole answer, not a part of it chosen by this table.

:class:`StreamTranslator` reads Anthropic's event stream
(https://docs.anthropic.com/en/docs/build-with-claude/streaming) and writes the chunks
as they come. ``data: [DONE]`` is written only after ``message_stop``; an ``error`` event
sets :attr:`StreamTranslator.failure`, so a cut or failed stream can never look complete
to the assembler that decides what is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.core.sse_events import SseEvents, read_event
from reprise.core.sse_replay import DONE_EVENT

FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                  "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                  "refusal": "content_filter"}
"""Anthropic's stop reasons that end a whole answer (https://docs.anthropic.com/en/api/handling-stop-reasons).
``pause_turn`` is left out on purpose: the turn was paused half-way and is to be sent back to be
continued, so it is no more a whole answer than a stop reason added after this table was written."""
UNMAPPED_FIELD = "anthropic_stop_reason"
"""The choice field carrying a stop reason that has no ``finish_reason``: the client still learns
why the answer ended, while ``finish_reason`` stays null, which is what keeps the answer out of the
cache (a streamed chat answer is complete only when every choice has a finish_reason)."""
UNTRANSLATED_FIELD = "anthropic_untranslated"
"""The choice field listing what of the provider's answer was not translated (block and delta
types, ``<type>.<key>`` for a key of a mapped block): such an answer is sent, never stored."""
_BLOCK_KEYS = {"text": frozenset({"type", "text"}), "tool_use": frozenset({"type", "id", "name", "input"})}
"""The content blocks translated, with the keys each one's translation carries."""
_DELTA_KEYS = {"text_delta": frozenset({"type", "text"}), "input_json_delta": frozenset({"type", "partial_json"})}
_EVENTS = frozenset({"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop", "ping", "error"})
"""Anthropic's stream events (https://docs.anthropic.com/en/docs/build-with-claude/streaming)."""
EMPTY_VALUES: tuple[Any, ...] = (None, "", [], {})
"""Values that hold nothing: a key carrying one loses nothing when it is not carried over (both ways
of the Messages translation read them so)."""
_USAGE_EXTRAS = ("cache_creation_input_tokens", "cache_read_input_tokens")
MAX_EVENT_BYTES = 16 * 2**20
"""An event still unfinished past this size is a broken stream, not a buffer that grows forever."""


def finish_reason(stop_reason: Any) -> str | None:
    """None for a stop reason that does not say the answer is whole (``pause_turn``, an unknown
    one): calling it ``stop`` would store a cut answer as the provider's complete one."""
    return FINISH_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None


def _finish(stop_reason: Any) -> dict[str, Any]:
    """The choice's ``finish_reason``, with the provider's own reason beside it when it maps to none."""
    finish = finish_reason(stop_reason)
    if finish is None and stop_reason is not None:
        return {"finish_reason": None, UNMAPPED_FIELD: stop_reason}
    return {"finish_reason": finish}


def is_whole(completion: dict[str, Any]) -> bool:
    """Every choice of a translated answer has a ``finish_reason`` and nothing untranslated: it may be stored."""
    return all(choice.get("finish_reason") and not choice.get(UNTRANSLATED_FIELD)
               for choice in completion["choices"])


def untranslated(item: dict[str, Any], known: dict[str, frozenset[str]]) -> list[str]:
    """What translating a block (or delta) by ``known`` would lose: its type when not mapped, else
    each other key holding something (``text.citations``; a null or empty one holds nothing)."""
    kind = item.get("type")
    keys = known.get(kind) if isinstance(kind, str) else None
    if keys is None:
        return [kind if isinstance(kind, str) else "a block without a type"]
    return [f"{kind}.{key}" for key, value in item.items() if key not in keys and value not in EMPTY_VALUES]


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's token counts as OpenAI's ``usage``; the prompt cache counts kept as they are."""
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion}
    out.update((name, usage[name]) for name in _USAGE_EXTRAS if usage.get(name) is not None)
    return out


def chat_completion(message: dict[str, Any], created: int) -> dict[str, Any] | None:
    """The ``chat.completion`` for a Messages API response; None if ``message`` is not one."""
    blocks = message.get("content")
    if message.get("type") != "message" or not isinstance(blocks, list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    lost: dict[str, None] = {}
    for block in blocks:
        if not isinstance(block, dict):
            return None
        lost.update(dict.fromkeys(untranslated(block, _BLOCK_KEYS)))
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "text":
            lost["text.text"] = None
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    choice = {"index": 0, "message": reply, "logprobs": None, **_finish(message.get("stop_reason"))}
    if lost:
        choice[UNTRANSLATED_FIELD] = list(lost)
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [choice],
        "usage": openai_usage(usage if isinstance(usage, dict) else {}),
    }


def openai_error(raw: bytes, status: int) -> bytes:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}`` as OpenAI's error JSON."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = f"the provider answered HTTP {status}"
    kind = kind if isinstance(kind, str) else "upstream_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": kind}})


@dataclass(slots=True)
class StreamTranslator:
    """Anthropic SSE bytes in, OpenAI ``chat.completion.chunk`` SSE bytes out.

    ``usage_chunk``: end with OpenAI's usage-only chunk (``choices: []``) before
    ``[DONE]``; every chunk then has ``usage: null``, as OpenAI sends them with
    ``stream_options.include_usage``.
    """

    created: int
    usage_chunk: bool
    finished: bool = False
    """``message_stop`` was read: the answer is whole."""
    failure: str | None = None
    """The ``error`` event's text, or why the stream could not be read."""
    untranslated: list[str] = field(default_factory=list)
    """What the provider sent that was not translated (block, delta and event types, block keys),
    in order of arrival: when not empty the answer is sent but never stored. Named to the client
    in the finish chunk's ``anthropic_untranslated``."""
    _events: SseEvents = field(default_factory=SseEvents)
    _base: dict[str, Any] = field(default_factory=dict)
    _usage: dict[str, Any] = field(default_factory=dict)
    _calls: dict[int, int] = field(default_factory=dict)
    """Anthropic content block index -> OpenAI tool call index."""
    _opened: bool = False
    _silent: set[int] = field(default_factory=set)
    """Tool calls whose input has had no fragment yet: ``{}`` is written when the block stops."""
    _foreign: set[int] = field(default_factory=set)
    """Blocks not translated (already named in :attr:`untranslated`): their deltas are theirs."""

    def feed(self, data: bytes) -> bytes:
        """The OpenAI events for ``data`` (any chunking: a partial event waits for its end)."""
        events = self._events.split(data)
        if len(self._events.buf) > MAX_EVENT_BYTES:
            self.failure = "the provider sent an event larger than 16 MiB"
            self._events.buf.clear()
        out = []
        for event in events:
            if self.finished or self.failure is not None:
                break
            _, payload = read_event(event)
            if payload is not None:
                out.append(self._translate(payload))
        return b"".join(out)

    def _translate(self, payload: bytes) -> bytes:
        event = _object_of(payload)
        if event is None:
            self.failure = "the provider sent an event that is not a JSON object"
            return b""
        kind = event.get("type")
        if kind not in _EVENTS:
            self._lose([kind if isinstance(kind, str) else "an event without a type"])
            return b""
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._delta(event.get("index"), event.get("delta"))
        if kind == "content_block_stop":
            return self._block_stop(event.get("index"))
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._stop()
        if kind == "error":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = f"the provider's stream failed: {message or 'error event'}"
        return b""  # ping: nothing to say

    def _stop(self) -> bytes:
        self.finished = True
        usage = self._chunk([], usage=openai_usage(self._usage)) if self.usage_chunk else b""
        return usage + DONE_EVENT

    def _lose(self, what: list[str]) -> None:
        self.untranslated.extend(name for name in what if name not in self.untranslated)

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {**self._base, **({"usage": None} if self.usage_chunk else {}), "choices": choices, **extra}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _choice(self, delta: dict[str, Any], finish: dict[str, Any] | None = None) -> bytes:
        if not self._opened:  # the first chunk says the role; content null unless text comes first
            self._opened = True
            delta = {"role": "assistant", "content": None, **delta}
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, **(finish or {"finish_reason": None})}])

    def _start(self, message: Any) -> bytes:
        message = message if isinstance(message, dict) else {}
        self._base = {"id": message.get("id"), "object": "chat.completion.chunk",
                      "created": self.created, "model": message.get("model")}
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage.update(usage)
        return b""

    def _block_start(self, index: Any, block: Any) -> bytes:
        if not isinstance(block, dict):
            self._lose(["a content block that is not an object"])
            return b""
        kind = block.get("type")
        self._lose(untranslated(block, _BLOCK_KEYS))
        if kind not in _BLOCK_KEYS:
            if isinstance(index, int):
                self._foreign.add(index)
            return b""
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                self._lose(["text.text"])
            return self._choice({"content": text}) if isinstance(text, str) and text else b""
        if not isinstance(index, int):
            self._lose(["tool_use.index"])
            return b""
        position = self._calls[index] = len(self._calls)
        self._silent.add(index)
        call = {"index": position, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}
        return self._choice({"tool_calls": [call]})

    def _delta(self, index: Any, delta: Any) -> bytes:
        if isinstance(index, int) and index in self._foreign:  # part of a block already named as not translated
            return b""
        if not isinstance(delta, dict):
            self._lose(["a content block delta that is not an object"])
            return b""
        self._lose(untranslated(delta, _DELTA_KEYS))
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return self._choice({"content": delta["text"]})
        fragment = delta.get("partial_json")
        if kind == "input_json_delta" and isinstance(index, int) and index in self._calls \
                and isinstance(fragment, str):
            if not fragment:
                return b""
            self._silent.discard(index)
            return self._choice({"tool_calls": [{"index": self._calls[index], "function": {"arguments": fragment}}]})
        if kind in _DELTA_KEYS:  # a mapped delta type that could not be placed: its content is lost
            self._lose([f"{kind} to block {index}"])
        return b""

    def _block_stop(self, index: Any) -> bytes:
        """A tool call that got no input fragment has the arguments ``{}``, as a whole answer's would."""
        if not isinstance(index, int) or index not in self._silent:
            return b""
        self._silent.discard(index)
        return self._choice({"tool_calls": [{"index": self._calls[index], "function": {"arguments": "{}"}}]})

    def _message_delta(self, event: dict[str, Any]) -> bytes:
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage.update((k, v) for k, v in usage.items() if v is not None)
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop is None:
            return b""
        finish = _finish(stop)
        if self.untranslated:
            finish[UNTRANSLATED_FIELD] = list(self.untranslated)
        return self._choice({}, finish)


def _object_of(payload: bytes) -> dict[str, Any] | None:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None
