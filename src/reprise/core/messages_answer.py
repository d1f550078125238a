"""Chat-completions answers as Anthropic Messages answers: a ``message``, its SSE events, its errors.

Why here and pure: the cache stores the provider's ``chat.completion`` (whatever the
inbound API), and a ``/v1/messages`` answer is computed from it every time, live or
replayed. The functions are deterministic in their input, so a hit is exactly what the
miss was: same ``id``, same blocks, same usage.

Mapping (https://docs.anthropic.com/en/api/messages, .../messages-streaming), first choice only
(the Messages API has no ``n``): ``content`` -> a ``text`` block (none when empty);
``tool_calls`` (and the legacy ``function_call``) -> ``tool_use`` blocks, ``arguments`` parsed
as the ``input`` object; ``finish_reason`` stop/length/tool_calls/content_filter ->
``stop_reason`` end_turn/max_tokens/tool_use/refusal, or ``stop_sequence`` when the provider
names the matched sequence (vLLM's choice-level ``stop_reason`` string; OpenAI does not say
which sequence stopped it, so there it is ``end_turn``); no ``finish_reason`` -> the
``anthropic/`` adapter's ``anthropic_stop_reason`` when there is one (``pause_turn``);
``usage`` prompt/completion tokens ->
``input_tokens``/``output_tokens``, and ``cache_creation_input_tokens`` /
``cache_read_input_tokens`` as they are when present (the ``anthropic/`` adapter keeps them).
The ``id`` and ``model`` are the provider's.

A stream's ``message_start`` cannot know the input tokens (OpenAI sends usage last):
it says 0, and ``message_delta`` carries both counts, as the Anthropic SDK accumulates them.

When the provider reports no usage (one that refuses ``stream_options``, whose stored
answers then have none either), both counts are 0, in the events and in the ``message``
alike: Anthropic's format requires the integers, and 0 says "not reported" where a count
estimated from the text would pass for the provider's (and for what was billed). A live
stream and its replay are therefore still the same message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from reprise.core.anthropic_response import UNMAPPED_FIELD
from reprise.core.sse_events import SseEvents, read_event

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}
#: Anthropic's ``error.type`` by HTTP status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}
#: The most one unfinished SSE event may hold while waiting for its end (the chat path sends whole events).
MAX_PENDING_EVENT = 8 * 2**20


def stop_reason(choice: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(stop_reason, stop_sequence)`` of a chat choice."""
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched:
        return "stop_sequence", matched
    if finish is None:
        # An anthropic/ answer that is not whole (pause_turn...) has no finish_reason, only
        # Anthropic's own reason: an Anthropic client gets it back, to continue the turn.
        own = choice.get(UNMAPPED_FIELD)
        return (own, None) if isinstance(own, str) else (None, None)
    return _STOP_REASONS.get(finish, "end_turn"), None


#: Anthropic's own usage fields, kept by the ``anthropic/`` adapter beside the chat counts: given back.
_ANTHROPIC_USAGE = ("cache_creation_input_tokens", "cache_read_input_tokens")


def usage_of(usage: Any) -> dict[str, int]:
    """Anthropic's usage for a chat ``usage``: the two counts (0 when not reported), and the
    prompt-cache counts when the answer has them (an ``anthropic/`` deployment's)."""
    usage = usage if isinstance(usage, dict) else {}
    out = {"input_tokens": _count(usage.get("prompt_tokens")), "output_tokens": _count(usage.get("completion_tokens"))}
    out.update((name, usage[name]) for name in _ANTHROPIC_USAGE if _is_count(usage.get(name)))
    return out


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: Any) -> int:
    return value if _is_count(value) else 0


def tool_input(arguments: Any) -> dict[str, Any]:
    """A call's ``arguments`` as Anthropic's ``input`` object; text that is not a JSON object is kept
    under ``arguments`` rather than lost."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {} if arguments in (None, "") else {"arguments": arguments}


def message_of(completion: dict[str, Any]) -> dict[str, Any]:
    """The Anthropic ``message`` for a chat completion (a valid one: the driver checked it)."""
    choice = completion["choices"][0]
    message = choice["message"]
    content: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    refusal = message.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:  # OpenAI's refusal: Anthropic says it with stop_reason "refusal"
        content.append({"type": "text", "text": refusal})
    for i, call in enumerate(_calls(message, completion)):
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or _call_id(completion, i),
                        "name": function.get("name") or "", "input": tool_input(function.get("arguments"))})
    reason, sequence = stop_reason(choice)
    if not text and isinstance(refusal, str) and refusal:
        reason, sequence = "refusal", None
    return {"id": completion.get("id"), "type": "message", "role": "assistant", "model": completion.get("model"),
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": usage_of(completion.get("usage"))}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some providers answer with text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _calls(message: dict[str, Any], completion: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        return [call for call in calls if isinstance(call, dict)]
    legacy = message.get("function_call")
    return [{"function": legacy}] if isinstance(legacy, dict) else []


def _call_id(completion: dict[str, Any], position: int) -> str:
    """A tool-use id for a call the provider gave none (legacy ``function_call``): stable per answer."""
    return f"toolu_{completion.get('id') or 'call'}_{position}"


def error_of(status: int, body: bytes) -> bytes:
    """Anthropic's error JSON for an error answer in OpenAI's shape (or any other body).

    A body already in Anthropic's shape (Anthropic's own answer, passed through by
    ``count_tokens``) is kept as it was sent."""
    message = None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if parsed.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str) \
                and isinstance(error.get("message"), str):
            return body
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"]
        elif isinstance(error, str):
            message = error
    if message is None:
        message = body[:512].decode("utf-8", "replace") or f"HTTP {status}"
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def sse_event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


@dataclass(slots=True)
class MessageStream:
    """Turns a ``chat.completion.chunk`` event stream into Anthropic's Messages events, as it passes.

    ``feed`` takes bytes as the chat path sends them and returns the Anthropic events they
    complete. Only the first choice is read. ``message_stop`` is sent when the chat stream's
    ``[DONE]`` arrives: a stream cut before it ends without one, as the provider's did, and
    an error event of the chat path becomes Anthropic's ``error`` event.
    """

    events: SseEvents = field(default_factory=SseEvents)
    """The chat stream's bytes split into whole events (line ends, a leading BOM: as the chat path reads them)."""
    started: bool = False
    ended: bool = False
    block: int = -1
    """Index of the open content block, -1 when none is open."""
    block_kind: str = ""
    tool_index: Any = None
    """The chat stream's ``index`` of the tool call the open block holds."""
    finish: tuple[str | None, str | None] = (None, None)
    refused: bool = False
    """The provider's answer was a refusal (OpenAI's ``refusal`` delta): it ends with stop_reason "refusal"."""
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    tool_id: Any = None
    """The id of the tool call the open block holds."""
    streamed_tools: set[Any] = field(default_factory=set)
    """The chat stream's indexes of the tool calls already given a block."""
    held: dict[Any, dict[str, Any]] = field(default_factory=dict)
    """Tool calls that arrived while another call's block was open, by the chat stream's index:
    sent whole, each as its own block, when the stream ends (see :meth:`_tool_deltas`)."""

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self.events.split(data):
            out.extend(self._event(event))
        if len(self.events.buf) > MAX_PENDING_EVENT:
            self.events.buf.clear()
            out.append(self._error("the provider's stream event is too large"))
        return b"".join(out)

    def _event(self, event: bytes) -> list[bytes]:
        _, payload = read_event(event)
        if payload is None or self.ended:
            return []
        if payload.strip() == b"[DONE]":
            return self._done()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [self._error("the provider sent a malformed stream event")]
        if not isinstance(chunk, dict):
            return [self._error("the provider sent a malformed stream event")]
        if "error" in chunk:
            error = chunk["error"]
            return [self._error(error.get("message") if isinstance(error, dict) else str(error))]
        return self._chunk(chunk)

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out = [] if self.started else [self._start(chunk)]
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_of(chunk["usage"])
        choices = chunk.get("choices")
        choice = next((c for c in choices if isinstance(c, dict) and c.get("index", 0) == 0), None) \
            if isinstance(choices, list) else None
        if choice is None:
            return out
        delta = choice.get("delta")
        if isinstance(delta, dict):
            text = _text(delta.get("content"))
            refusal = delta.get("refusal")
            if not text and isinstance(refusal, str) and refusal:  # said as text, and ended as a refusal
                text, self.refused = refusal, True
            if text:
                out += self._open("text", None, {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
            out += self._tool_deltas(delta, chunk)
        if choice.get("finish_reason") is not None or choice.get(UNMAPPED_FIELD) is not None:
            self.finish = ("refusal", None) if self.refused else stop_reason(choice)
        return out

    def _tool_deltas(self, delta: dict[str, Any], chunk: dict[str, Any]) -> list[bytes]:
        """Tool-call fragments as ``tool_use`` blocks: the first call streams live, and calls
        whose fragments arrive while another call's block is open are held and sent whole at
        the end. OpenAI-style streams may announce every call first and then send the
        arguments, or interleave the calls' fragments (each carries its ``index``); an Anthropic
        block cannot be reopened, so opening one per change of index (as before) turned two
        calls into four, two of them nameless, or split one call's JSON over several blocks.
        A new ``id`` and ``name`` at the open block's index is a new call (servers that send
        every call at index 0)."""
        calls = delta.get("tool_calls")
        if not isinstance(calls, list):
            legacy = delta.get("function_call")
            calls = [{"index": 0, "function": legacy}] if isinstance(legacy, dict) else []
        out: list[bytes] = []
        for call in calls:
            if not isinstance(call, dict):
                continue
            function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
            index = call.get("index", self.tool_index if self.block_kind == "tool_use" else 0)
            index = index if isinstance(index, int | str) else 0  # hashable; a malformed one as the first
            ident, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
            fresh_call = bool(ident and name and ident != self.tool_id)
            if self.block_kind == "tool_use" and index == self.tool_index and not fresh_call:
                pass  # more of the open block's call
            elif self.block_kind != "tool_use" and index not in self.held and index not in self.streamed_tools:
                out += self._open_tool(index, ident or _call_id(chunk, index if isinstance(index, int) else 0), name)
            elif self.block_kind == "tool_use" and index == self.tool_index:  # index reused for a new call
                out += self._open_tool(index, ident, name)
            else:
                held = self.held.setdefault(index, {"id": None, "name": "", "arguments": []})
                held["id"] = held["id"] or ident or _call_id(chunk, index if isinstance(index, int) else 0)
                held["name"] = held["name"] or name or ""
                if isinstance(arguments, str) and arguments:
                    held["arguments"].append(arguments)
                continue
            if isinstance(arguments, str) and arguments:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _open_tool(self, index: Any, ident: Any, name: Any) -> list[bytes]:
        self.streamed_tools.add(index)
        self.tool_id = ident
        return self._open("tool_use", index, {"type": "tool_use", "id": ident, "name": name or "", "input": {}},
                          force=True)

    def _held_blocks(self) -> list[bytes]:
        out: list[bytes] = []
        for index, call in self.held.items():
            out += self._open_tool(index, call["id"], call["name"])
            if call["arguments"]:
                out.append(self._delta({"type": "input_json_delta", "partial_json": "".join(call["arguments"])}))
        self.held.clear()
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": chunk.get("id"), "type": "message", "role": "assistant", "model": chunk.get("model"),
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse_event("message_start", {"message": message})

    def _open(self, kind: str, tool_index: Any, block: dict[str, Any], force: bool = False) -> list[bytes]:
        if self.block_kind == kind and not force:
            return []
        out = self._close()
        self.block += 1
        self.block_kind, self.tool_index = kind, tool_index
        out.append(sse_event("content_block_start", {"index": self.block, "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if not self.block_kind:
            return []
        self.block_kind = ""
        return [sse_event("content_block_stop", {"index": self.block})]

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return sse_event("content_block_delta", {"index": self.block, "delta": delta})

    def _done(self) -> list[bytes]:
        out = [] if self.started else [self._start({})]
        out += self._held_blocks()
        out += self._close()
        self.ended = True
        reason, sequence = self.finish
        out.append(sse_event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                               "usage": self.usage}))
        out.append(sse_event("message_stop", {}))
        return out

    def _error(self, message: str | None) -> bytes:
        self.ended = True
        return sse_event("error", {"error": {"type": "api_error", "message": message or "the stream broke"}})
