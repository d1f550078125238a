"""A stored chat completion replayed as OpenAI ``chat.completion.chunk`` server-sent events.

The inverse of :class:`reprise.core.streaming.StreamAssembler` up to chunk boundaries (its
module says exactly what is promised, ``tests/core/test_replay_property.py`` checks it): what a
streamed hit sends when no recording of the provider's own events was kept.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

#: The event that ends an OpenAI stream.
DONE_EVENT: Final = b"data: [DONE]\n\n"
_CHOICE_OWN = frozenset({"index", "delta", "message", "logprobs", "finish_reason"})


def render_sse(completion: dict[str, Any], include_usage: bool) -> bytes:
    """OpenAI ``chat.completion.chunk`` events replaying a stored completion, then DONE.

    Every top-level field but ``choices`` and ``usage`` is in each chunk. With
    ``include_usage`` (the client's ``stream_options.include_usage``) each chunk has
    ``usage: null`` and a last ``choices: []`` chunk carries the stored usage, as OpenAI does.
    """
    base = {k: v for k, v in completion.items() if k not in ("choices", "usage")}
    base["object"] = "chat.completion.chunk"
    if include_usage:
        base["usage"] = None
    # The top-level fields are the same in every chunk: written once, each chunk ends with its choices.
    head = b"data: " + orjson.dumps(base)[:-1] + b',"choices":'
    out: list[bytes] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        if isinstance(choice, dict):
            out.extend(head + orjson.dumps([body]) + b"}\n\n" for body in _choice_chunks(position, choice))
    if include_usage:
        out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": completion.get("usage")}) + b"\n\n")
    out.append(DONE_EVENT)
    return b"".join(out)


def _choice_chunks(position: int, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """A role chunk, a chunk with all the rest of the message, and a finish chunk."""
    index = choice.get("index", position)
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    content = message.get("content")
    head = {"role": message.get("role") or "assistant", "content": "" if isinstance(content, str) else None}
    delta = {k: v for k, v in message.items() if k != "role" and not (k == "content" and content in ("", None))}
    if isinstance(delta.get("tool_calls"), list):
        delta["tool_calls"] = [_indexed(i, call) for i, call in enumerate(delta["tool_calls"])]
    extra = {k: v for k, v in choice.items() if k not in _CHOICE_OWN}
    quiet = {"logprobs": None} if "logprobs" in choice else {}
    chunks = [{"index": index, "delta": head, **quiet, "finish_reason": None}]
    if delta or extra or choice.get("logprobs") is not None:
        logprobs = {"logprobs": choice["logprobs"]} if quiet else {}
        chunks.append({"index": index, "delta": delta, **extra, **logprobs, "finish_reason": None})
    chunks.append({"index": index, "delta": {}, **quiet, "finish_reason": choice.get("finish_reason")})
    return chunks


def _indexed(position: int, call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    return {"index": position, **{k: v for k, v in call.items() if k != "index"}}
