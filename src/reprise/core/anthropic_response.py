"""Anthropic Messages API answers as OpenAI chat completions: whole, streamed, or errors (pure).

The gateway stores and replays OpenAI's form only, so an Anthropic answer is turned into
a ``chat.completion`` (or ``chat.completion.chunk`` SSE ending in ``data: [DONE]``) here,
as LiteLLM does (https://docs.litellm.ai/docs/providers/anthropic): text blocks joined,
``tool_use`` blocks as ``tool_calls`` (``input`` written as the JSON ``arguments``
string), ``stop_reason`` as ``finish_reason``, ``usage`` as prompt/completion/total with
Anthropic's cache token counts kept beside them. A stop reason that does not end a whole
answer (``pause_turn``, or one unknown here) gives ``finish_reason: null`` and the reason as
``anthropic_stop_reason``: sent to the client, never stored.

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

from reprise.core.streaming import DONE_EVENT

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
    """Every choice of a translated answer has a ``finish_reason``: it may be stored."""
    return all(choice.get("finish_reason") for choice in completion["choices"])


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
    for block in blocks:
        if not isinstance(block, dict):
            return None
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None, **_finish(message.get("stop_reason"))}],
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
    _buffer: bytes = b""
    _base: dict[str, Any] = field(default_factory=dict)
    _usage: dict[str, Any] = field(default_factory=dict)
    _calls: dict[int, int] = field(default_factory=dict)
    """Anthropic content block index -> OpenAI tool call index."""
    _opened: bool = False
    _silent: set[int] = field(default_factory=set)
    """Tool calls whose input has had no fragment yet: ``{}`` is written when the block stops."""

    def feed(self, data: bytes) -> bytes:
        """The OpenAI events for ``data`` (any chunking: a partial event waits for its end)."""
        self._buffer = (self._buffer + data).replace(b"\r\n", b"\n")  # a CRLF may be split across pieces
        *events, self._buffer = self._buffer.split(b"\n\n")
        if len(self._buffer) > MAX_EVENT_BYTES:
            self.failure, self._buffer = "the provider sent an event larger than 16 MiB", b""
        out = []
        for event in events:
            if self.finished or self.failure is not None:
                break
            payload = _data_of(event)
            if payload is not None:
                out.append(self._translate(payload))
        return b"".join(out)

    def _translate(self, payload: bytes) -> bytes:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            self.failure = "the provider sent an event that is not a JSON object"
            return b""
        kind = event.get("type")
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
            self.finished = True
            usage = self._chunk([], usage=openai_usage(self._usage)) if self.usage_chunk else b""
            return usage + DONE_EVENT
        if kind == "error":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = f"the provider's stream failed: {message or 'error event'}"
        return b""  # ping, and event types added later: nothing to say

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
            return b""
        if block.get("type") == "text" and block.get("text"):
            return self._choice({"content": block["text"]})
        if block.get("type") != "tool_use" or not isinstance(index, int):
            return b""
        position = self._calls[index] = len(self._calls)
        self._silent.add(index)
        call = {"index": position, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}
        return self._choice({"tool_calls": [call]})

    def _delta(self, index: Any, delta: Any) -> bytes:
        if not isinstance(delta, dict):
            return b""
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
            return self._choice({"content": delta["text"]})
        if delta.get("type") == "input_json_delta" and isinstance(index, int) and index in self._calls:
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                self._silent.discard(index)
                return self._choice({"tool_calls": [{"index": self._calls[index],
                                                     "function": {"arguments": fragment}}]})
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
        return self._choice({}, _finish(stop)) if stop is not None else b""


def _data_of(event: bytes) -> bytes | None:
    """The ``data:`` payload of one SSE event (lines joined), or None if it has none."""
    lines = [line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None
