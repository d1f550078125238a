"""Server-sent events for chat completions: reassemble an upstream stream, render a stored one.

A streamed answer is stored only when it *completed normally*: ``data: [DONE]`` was
seen, every chunk was valid JSON, and every choice carries a ``finish_reason``. It is
stored as the equivalent non-streamed ``chat.completion`` JSON, so a streamed and a
non-streamed request for one prompt share one entry; :func:`render_sse` turns it back
into OpenAI's chunk format (role, content, tool calls, finish, optional usage, DONE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

DONE_EVENT = b"data: [DONE]\n\n"


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[Any] | None = None
    finish_reason: str | None = None
    saw_content: bool = False


@dataclass(slots=True)
class StreamAssembler:
    """Consumes upstream SSE bytes; yields the events to forward and keeps the whole answer.

    ``drop_usage_chunk`` removes the usage-only chunk (``choices: []``) that Reprise
    asked upstream for on the client's behalf when the client did not ask for it.
    """

    drop_usage_chunk: bool = False
    done: bool = False
    malformed: bool = False
    _buffer: bytes = b""
    _top: dict[str, Any] = field(default_factory=dict)
    _choices: dict[int, _Choice] = field(default_factory=dict)
    _usage: Any = None

    def feed(self, data: bytes) -> list[bytes]:
        """Add raw bytes; return the complete events (with their blank line) to forward."""
        self._buffer += data.replace(b"\r\n", b"\n") if b"\r" in data else data
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return events
            block, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            if self._take_event(block):
                events.append(block)

    def _take_event(self, block: bytes) -> bool:
        """Absorb one event; return whether to forward it."""
        payload = b"\n".join(
            line[5:].lstrip(b" ") for line in block.split(b"\n") if line.startswith(b"data:")
        )
        if not payload:
            return True  # comments / keep-alives / event names pass through
        if payload.strip() == b"[DONE]":
            self.done = True
            return True
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.malformed = True
            return True
        if not isinstance(chunk, dict):
            self.malformed = True
            return True
        self._absorb(chunk)
        usage_only = not chunk.get("choices") and chunk.get("usage") is not None
        return not (usage_only and self.drop_usage_chunk)

    def _absorb(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            self.malformed = True
        for name in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(name) is not None:
                self._top[name] = chunk[name]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for raw in chunk.get("choices") or ():
            if not isinstance(raw, dict):
                self.malformed = True
                continue
            choice = self._choices.setdefault(int(raw.get("index", 0)), _Choice())
            _merge_delta(choice, raw.get("delta") or {})
            if raw.get("finish_reason"):
                choice.finish_reason = raw["finish_reason"]
            lp = raw.get("logprobs")
            if isinstance(lp, dict) and isinstance(lp.get("content"), list):
                choice.logprobs = (choice.logprobs or []) + lp["content"]

    @property
    def complete(self) -> bool:
        return (
            self.done
            and not self.malformed
            and bool(self._choices)
            and all(c.finish_reason for c in self._choices.values())
        )

    def completion(self) -> dict[str, Any]:
        """The non-streamed ``chat.completion`` equivalent of what was received."""
        return {
            "id": self._top.get("id", ""),
            "object": "chat.completion",
            "created": self._top.get("created", 0),
            "model": self._top.get("model", ""),
            **{k: self._top[k] for k in ("system_fingerprint", "service_tier") if k in self._top},
            "choices": [_finish_choice(i, c) for i, c in sorted(self._choices.items())],
            "usage": self._usage,
        }


def _merge_delta(choice: _Choice, delta: dict[str, Any]) -> None:
    if delta.get("role"):
        choice.role = delta["role"]
    if delta.get("content") is not None:
        choice.saw_content = True
        choice.content.append(delta["content"])
    if delta.get("refusal"):
        choice.refusal.append(delta["refusal"])
    for call in delta.get("tool_calls") or ():
        slot = choice.tool_calls.setdefault(
            int(call.get("index", 0)), {"id": None, "type": "function", "name": "", "args": []}
        )
        slot["id"] = call.get("id") or slot["id"]
        slot["type"] = call.get("type") or slot["type"]
        function = call.get("function") or {}
        slot["name"] += function.get("name") or ""
        slot["args"].append(function.get("arguments") or "")


def _finish_choice(index: int, choice: _Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": choice.role,
        "content": "".join(choice.content) if choice.saw_content else None,
    }
    if choice.refusal:
        message["refusal"] = "".join(choice.refusal)
    if choice.tool_calls:
        message["tool_calls"] = [
            {
                "id": slot["id"],
                "type": slot["type"],
                "function": {"name": slot["name"], "arguments": "".join(slot["args"])},
            }
            for _, slot in sorted(choice.tool_calls.items())
        ]
    logprobs = {"content": choice.logprobs, "refusal": None} if choice.logprobs else None
    return {
        "index": index,
        "message": message,
        "logprobs": logprobs,
        "finish_reason": choice.finish_reason,
    }


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def render_sse(completion: dict[str, Any], include_usage: bool) -> bytes:
    """OpenAI ``chat.completion.chunk`` events replaying a stored completion, then DONE."""
    base: dict[str, Any] = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    if completion.get("system_fingerprint") is not None:
        base["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        base["usage"] = None
    out: list[bytes] = []
    for choice in completion.get("choices") or ():
        out.extend(_choice_events(base, choice))
    if include_usage:
        out.append(_event({**base, "choices": [], "usage": completion.get("usage")}))
    out.append(DONE_EVENT)
    return b"".join(out)


def _choice_events(base: dict[str, Any], choice: dict[str, Any]) -> list[bytes]:
    index = choice.get("index", 0)
    message = choice.get("message") or {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        body.update(extra)
        return _event({**base, "choices": [body]})

    first = "" if message.get("content") is not None else None
    events = [chunk({"role": message.get("role", "assistant"), "content": first})]
    if message.get("content"):
        events.append(chunk({"content": message["content"]}, logprobs=choice.get("logprobs")))
    if message.get("refusal"):
        events.append(chunk({"refusal": message["refusal"]}))
    for i, call in enumerate(message.get("tool_calls") or ()):
        events.append(chunk({"tool_calls": [{"index": i, **call}]}))
    events.append(chunk({}, choice.get("finish_reason") or "stop"))
    return events
