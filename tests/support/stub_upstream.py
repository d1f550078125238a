"""A real HTTP server standing in for an OpenAI-compatible LLM provider.

Why a separate process: the gateway under test must talk to its upstream over
a real socket, with real connection handling, exactly as in production. An
in-process mock would share the event loop and hide timing, coalescing and
connection-reuse bugs. The benchmark uses the same server, so the numbers
measure the gateway and not a mock.

Run it directly::

    python tests/support/stub_upstream.py --port 8900 [--delay-ms 300] [--host 127.0.0.1]

or from Python with :class:`StubUpstream`, which starts it in a subprocess on a
free port. Answers are deterministic from the request but unique per call
(``"echo: <last user message> #<call number>"``), so a test can tell a cached
answer from a fresh one.

Fault injection is chosen by the request's ``model`` field, so a gateway config
can map a model name to a fault (see :data:`FAULT_MODELS`). Embeddings are sha256
noise (any two inputs unrelated) unless the model name contains ``words``
(:data:`WORDS_MODEL`): then they are a bag of letter-words (:func:`words_vector`), so
prompts sharing words are similar and a semantic cache test means something. Answer
shapes other providers use (reasoning deltas, legacy ``function_call``, a refused
``stream_options``, a non-JSON 200, a stall, a slow stream) are chosen the same way (see
:data:`MODE_MODELS`). The control endpoints ``GET /_stats``, ``POST /_reset``,
``POST /_delay``, ``GET /_last`` and ``GET /_requests`` are for tests only.

This file only needs the standard library and aiohttp (orjson and uvloop are
used when importable), so it runs in any environment that has reprise's
dependencies.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a reprise dependency

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def _loads(data: bytes) -> Any:
        return json.loads(data)


#: Substrings of the request's ``model`` that trigger a fault, and what they do.
FAULT_MODELS: dict[str, str] = {
    "fail-500": "HTTP 500 with an OpenAI error body",
    "fail-429": "HTTP 429 (rate limit) with an OpenAI error body and Retry-After: 1",
    "fail-400": "HTTP 400 (invalid request) with an OpenAI error body",
    "slow": f"sleeps {5.0} s before answering (for timeouts)",
    "cut-stream": "streams a few chunks then aborts the connection without [DONE] "
    "(non-stream: sends half of a Content-Length body, then aborts)",
    "bad-sse": "streams one valid chunk, then malformed data, then [DONE] (non-stream: HTTP 200 with truncated JSON)",
    "no-done": "streams content, then ends cleanly without finish_reason and without [DONE] "
    "(non-stream: a normal answer)",
    "hiccup-400": "the first call for this exact model name is an HTTP 400 naming no parameter (a provider's "
    "passing hiccup); every later one a normal answer",
}
#: Substrings of the request's ``model`` that choose an answer shape (not an error status).
#: Checked in this order; ``slow-stream`` is not the ``slow`` fault.
MODE_MODELS: dict[str, str] = {
    "reasoning": "DeepSeek-style answer: message.reasoning_content (streamed as several deltas before the "
    "content, with content: null), unknown fields at every level (top-level x_vendor object, choice-level "
    "stop_reason: 42 on the finishing choice, message/delta x_extra string streamed in pieces), usage with "
    "completion_tokens_details.reasoning_tokens",
    "function-call": "legacy function_call answer: content null, function_call get_weather({\"city\": \"Paris\"}), "
    "finish_reason function_call; streamed as the name in the first delta, then the arguments in pieces",
    "reject-stream-options": "HTTP 400 (OpenAI error naming stream_options) whenever the body has stream_options; "
    "otherwise a normal answer (streamed or not)",
    "invalid-json": "HTTP 200 whose body is not JSON: Content-Type application/json for a plain request, "
    "text/html (no SSE) for a streamed one; the body is <html>oops</html>",
    "stall": f"accepts the request and sleeps {30.0:g} s before answering (a gateway timeout fires first)",
    "slow-stream": "a normal streamed answer with a pause between chunks (0.3 s, or the x-stub-chunk-delay-ms "
    "header); a plain request is answered at once",
    "unfinished": "a plain answer whose last choice has finish_reason null (cut short; with n=2 the first "
    "choice still finished with stop); streamed: a normal answer",
    "dup-index": "embeddings: every item of the answer has index 0",
    "bad-vectors": "embeddings: an item whose input mentions null, mixed or bool gets the embedding null, "
    "[1.5, \"x\", {}] or [true, 0.5]; other items a normal vector",
    "judge": "a semantic judge's answer: the content is the text after the first reply= in the last user "
    "message (up to a space, quote or backslash: a prompt carrying reply=yes gets yes), else no",
    "vendor-fields": "embeddings with unknown fields at every level: top-level id \"emb-<call number>\" "
    "(differs per call) and x_vendor {\"region\": \"eu\"} (the same each call), x_item {\"chars\": <input "
    "length>} on each item, usage x_unit \"token\" (the same each call) and x_call <call number>; with "
    "\"oversized\" in the name also a top-level x_padding of 20,000 characters",
    "error-field": "a plain HTTP 200 answer with well-formed finished choices and, beside them, a top-level "
    "error object (message \"upstream overloaded\"); streamed: a normal answer",
}
SLOW_SECONDS = 5.0
STALL_SECONDS = 30.0
SLOW_STREAM_CHUNK_DELAY_MS = 300.0
#: ``GET /_requests`` keeps the last this many chat/embeddings/models requests.
RECORDED_REQUESTS = 200
FUNCTION_CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
INVALID_JSON_BODY = b"<html>oops</html>"
EMBEDDING_DIMENSIONS = 8
#: A model name containing this gets bag-of-words embeddings (:func:`words_vector`).
WORDS_MODEL = "words"
WORDS_DIMENSIONS = 64
READY_PREFIX = "STUB_UPSTREAM_READY port="

_ERRORS = {
    500: ("The server had an error while processing your request.", "server_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    400: ("Invalid request (injected by stub upstream).", "invalid_request_error", None),
}


@dataclass
class StubState:
    """Counters and settings of one stub server; lives on the app, never global."""

    delay_ms: float = 0.0
    chat: int = 0
    embeddings: int = 0
    embedding_items: int = 0
    models: int = 0
    by_model: Counter[str] = field(default_factory=Counter)
    last: dict[str, Any] | None = None
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORDED_REQUESTS))

    def stats(self) -> dict[str, Any]:
        return {
            "chat": self.chat,
            "embeddings": self.embeddings,
            "embedding_items": self.embedding_items,
            "models": self.models,
            "by_model": dict(self.by_model),
            "delay_ms": self.delay_ms,
        }

    def reset(self) -> None:
        self.chat = self.embeddings = self.embedding_items = self.models = 0
        self.by_model.clear()
        self.last = None
        self.requests.clear()

    def record(self, request: web.Request, body: Any) -> None:
        """Keep what arrived (path, headers, parsed body or ``None``) for ``/_requests``; a parsed
        chat or embeddings body also becomes ``/_last``."""
        seen = _last_request(request, body)
        self.requests.append(seen)
        if body is not None and request.path.endswith(("/chat/completions", "/embeddings")):
            self.last = seen


STATE_KEY = web.AppKey("state", StubState)


# --------------------------------------------------------------------------- helpers


def _json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(obj), status=status, content_type="application/json", headers=headers)


def error_response(status: int, message: str | None = None, param: str | None = None) -> web.Response:
    """An error shaped like OpenAI's: ``{"error": {message, type, param, code}}``."""
    default_message, kind, code = _ERRORS.get(status, _ERRORS[400])
    body = {"error": {"message": message or default_message, "type": kind, "param": param, "code": code}}
    headers = {"Retry-After": "1"} if status == 429 else None
    return _json_response(body, status, headers)


def _text_of(content: Any) -> str:
    """Text of a message ``content``: a string or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _last_request(request: web.Request, body: Any) -> dict[str, Any]:
    headers = {str(k): v for k, v in request.headers.items()}
    return {"path": request.path, "query": request.query_string, "headers": headers, "body": body}


async def _read_json(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = _loads(await request.read())
    except ValueError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error_response(400, "The request body must be a JSON object.")
    return body


async def _apply_delay_and_faults(request: web.Request, state: StubState, model: str) -> web.Response | None:
    """Sleep for the configured delay and return an error response for ``fail-*`` models."""
    delay_ms = state.delay_ms
    header = request.headers.get("x-stub-delay-ms")
    if header is not None:
        try:
            delay_ms = float(header)
        except ValueError:
            return error_response(400, "x-stub-delay-ms must be a number")
    delay = SLOW_SECONDS if "slow" in model and "slow-stream" not in model else delay_ms / 1000
    if "stall" in model:
        delay = STALL_SECONDS
    if delay > 0:
        await asyncio.sleep(delay)
    for status in (500, 429, 400):
        if f"fail-{status}" in model:
            return error_response(status)
    if "hiccup-400" in model and state.by_model[model] == 1:
        return error_response(400)
    return None


# --------------------------------------------------------------------------- chat


@dataclass(frozen=True)
class ChatAnswer:
    """What one chat call answers, independent of how it is sent (JSON or SSE)."""

    call: int
    model: str
    created: int
    contents: list[str]  # one per choice; empty strings for tool-call choices
    tool_calls: list[dict[str, Any]] | None  # one call per choice, or None
    prompt_tokens: int

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.call}"

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, int]:
        completion = sum(_words(c) for c in self.contents)
        if self.tool_calls:
            completion += sum(_words(t["function"]["arguments"]) for t in self.tool_calls)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def make_chat_answer(body: dict[str, Any], call: int) -> ChatAnswer:
    """Deterministic answer for ``body``; ``call`` makes it unique per call."""
    messages = body.get("messages") or []
    last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    last_text = _text_of(messages[-1].get("content")) if messages else ""
    n = max(1, int(body.get("n") or 1))
    contents = [f"echo: {last_user} #{call}" if i == 0 else f"echo: {last_user} #{call}/{i}" for i in range(n)]
    if "judge" in str(body.get("model", "")):
        reply = re.search(r'reply=([^\s"\\]*)', last_user)
        contents = [reply.group(1) if reply else "no"] * n
    tool_calls = None
    tools = body.get("tools") or []
    if tools and "call tool" in last_text.lower():
        name = _tool_name(body, tools)
        arguments = json.dumps({"query": last_user, "call": call})
        tool_calls = [
            {
                "id": f"call_{call}_{i}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            for i in range(n)
        ]
        contents = ["" for _ in range(n)]
    prompt_tokens = sum(_words(_text_of(m.get("content"))) for m in messages)
    return ChatAnswer(
        call=call,
        model=str(body.get("model", "")),
        created=int(time.time()),
        contents=contents,
        tool_calls=tool_calls,
        prompt_tokens=prompt_tokens,
    )


def _tool_name(body: dict[str, Any], tools: list[Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return str(choice.get("function", {}).get("name", "tool"))
    first = tools[0] if isinstance(tools[0], dict) else {}
    return str(first.get("function", {}).get("name", "tool"))


def chat_completion_json(answer: ChatAnswer) -> dict[str, Any]:
    if "function-call" in answer.model:
        return _function_call_json(answer)
    if "reasoning" in answer.model:
        return _reasoning_json(answer)
    choices = []
    for i, content in enumerate(answer.contents):
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if answer.tool_calls:
            message["content"] = None
            message["tool_calls"] = [answer.tool_calls[i]]
        choices.append(
            {
                "index": i,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        )
    if "unfinished" in answer.model:
        choices[-1]["finish_reason"] = None
    completion = {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_stub",
        "choices": choices,
        "usage": answer.usage(),
    }
    if "error-field" in answer.model:
        completion["error"] = {"message": "upstream overloaded", "type": "server_error", "code": 503}
    return completion


def chat_chunks(answer: ChatAnswer, include_usage: bool, finish: bool = True) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects OpenAI would stream for ``answer``.

    Mirrors https://platform.openai.com/docs/api-reference/chat-streaming: a first
    delta with the role, content word by word (tool-call arguments in pieces),
    a chunk with ``finish_reason``, then with ``stream_options.include_usage``
    a last chunk with ``choices: []`` and the usage (``usage: null`` before it).
    """

    if "function-call" in answer.model:
        return _function_call_chunks(answer, include_usage, finish)
    if "reasoning" in answer.model:
        return _reasoning_chunks(answer, include_usage, finish)

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return _chunk(answer, include_usage, index, delta, finish_reason)

    chunks = []
    for i, content in enumerate(answer.contents):
        if answer.tool_calls:
            call = answer.tool_calls[i]
            head = {
                "index": 0,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            chunks.append(chunk(i, {"role": "assistant", "content": None, "tool_calls": [head]}))
            for piece in _split_arguments(call["function"]["arguments"]):
                chunks.append(chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        else:
            chunks.append(chunk(i, {"role": "assistant", "content": "", "refusal": None}))
            for piece in _split_words(content):
                chunks.append(chunk(i, {"content": piece}))
        if finish:
            chunks.append(chunk(i, {}, answer.finish_reason))
    if include_usage and finish:
        chunks.append(_usage_chunk(answer, answer.usage()))
    return chunks


def _chunk(answer: ChatAnswer, include_usage: bool, index: int, delta: dict[str, Any],
           finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with one choice; ``extra`` goes on the choice."""
    c: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_stub",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **extra}],
    }
    if include_usage:
        c["usage"] = None
    return c


def _usage_chunk(answer: ChatAnswer, usage: dict[str, Any]) -> dict[str, Any]:
    last = _chunk(answer, True, 0, {})
    last["choices"] = []
    last["usage"] = usage
    return last


# --------------------------------------------------------------------------- answer shapes (MODE_MODELS)

#: Unknown top-level field of every ``reasoning`` answer and chunk (a vendor extension).
X_VENDOR = {"region": "stub-1", "flags": [1, 2, 3]}
#: Unknown message-level string of every ``reasoning`` answer, streamed in pieces.
X_EXTRA = "vendor note about this answer"
#: Unknown choice-level field on the finishing ``reasoning`` choice (vLLM's stop_reason shape).
STOP_REASON = 42


def reasoning_text(answer: ChatAnswer, index: int) -> str:
    """The ``reasoning_content`` of choice ``index``: a few words, unique per call."""
    return f"The user wants an echo. Call {answer.call} choice {index}: repeat their words."


def _reasoning_usage(answer: ChatAnswer) -> dict[str, Any]:
    usage: dict[str, Any] = answer.usage()
    reasoning = sum(_words(reasoning_text(answer, i)) for i in range(len(answer.contents)))
    usage["completion_tokens"] += reasoning
    usage["total_tokens"] += reasoning
    usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


def _reasoning_json(answer: ChatAnswer) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {
                "role": "assistant",
                "content": content,
                "reasoning_content": reasoning_text(answer, i),
                "x_extra": X_EXTRA,
            },
            "logprobs": None,
            "finish_reason": "stop",
            "stop_reason": STOP_REASON,
        }
        for i, content in enumerate(answer.contents)
    ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_stub",
        "x_vendor": X_VENDOR,
        "choices": choices,
        "usage": _reasoning_usage(answer),
    }


def _reasoning_chunks(answer: ChatAnswer, include_usage: bool, finish: bool) -> list[dict[str, Any]]:
    """DeepSeek's shape: reasoning deltas (``content: null``) first, then content deltas
    (``reasoning_content: null``); ``x_extra`` rides on the first content deltas in pieces;
    ``stop_reason`` is null until the finishing chunk; ``x_vendor`` is on every chunk."""

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        stop = STOP_REASON if finish_reason else None
        return {**_chunk(answer, include_usage, index, delta, finish_reason, stop_reason=stop), "x_vendor": X_VENDOR}

    chunks = []
    for i, content in enumerate(answer.contents):
        chunks.append(chunk(i, {"role": "assistant", "content": None, "reasoning_content": ""}))
        for piece in _split_words(reasoning_text(answer, i)):
            chunks.append(chunk(i, {"content": None, "reasoning_content": piece}))
        words = _split_words(content)
        extras = _split_words(X_EXTRA)
        if len(extras) > len(words) > 0:  # the rest rides on the last content delta
            extras[len(words) - 1 :] = ["".join(extras[len(words) - 1 :])]
        for n, piece in enumerate(words):
            delta: dict[str, Any] = {"content": piece, "reasoning_content": None}
            if n < len(extras):
                delta["x_extra"] = extras[n]
            chunks.append(chunk(i, delta))
        if finish:
            chunks.append(chunk(i, {}, "stop"))
    if include_usage and finish:
        chunks.append({**_usage_chunk(answer, _reasoning_usage(answer)), "x_vendor": X_VENDOR})
    return chunks


def _function_call_usage(answer: ChatAnswer) -> dict[str, int]:
    completion = _words(FUNCTION_CALL["arguments"]) * len(answer.contents)
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": answer.prompt_tokens + completion,
    }


def _function_call_json(answer: ChatAnswer) -> dict[str, Any]:
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": None, "function_call": dict(FUNCTION_CALL)},
            "logprobs": None,
            "finish_reason": "function_call",
        }
        for i in range(len(answer.contents))
    ]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_stub",
        "choices": choices,
        "usage": _function_call_usage(answer),
    }


def _function_call_chunks(answer: ChatAnswer, include_usage: bool, finish: bool) -> list[dict[str, Any]]:
    """The legacy ``functions`` stream: the name first (empty arguments), then argument pieces."""
    chunks = []
    for i in range(len(answer.contents)):
        head = {"role": "assistant", "content": None, "function_call": {"name": FUNCTION_CALL["name"], "arguments": ""}}
        chunks.append(_chunk(answer, include_usage, i, head))
        for piece in _split_arguments(FUNCTION_CALL["arguments"], size=5):
            chunks.append(_chunk(answer, include_usage, i, {"function_call": {"arguments": piece}}))
        if finish:
            chunks.append(_chunk(answer, include_usage, i, {}, "function_call"))
    if include_usage and finish:
        chunks.append(_usage_chunk(answer, _function_call_usage(answer)))
    return chunks


def _invalid_json(stream: bool) -> web.Response:
    """A 200 that is not what was asked for: an HTML page, as a misconfigured proxy sends."""
    return web.Response(body=INVALID_JSON_BODY, content_type="text/html" if stream else "application/json")


def _chunk_delay(request: web.Request, model: str) -> float | web.Response:
    """Seconds to wait between streamed chunks: only for ``slow-stream`` models."""
    if "slow-stream" not in model:
        return 0.0
    header = request.headers.get("x-stub-chunk-delay-ms")
    try:
        return (SLOW_STREAM_CHUNK_DELAY_MS if header is None else float(header)) / 1000
    except ValueError:
        return error_response(400, "x-stub-chunk-delay-ms must be a number")


def _split_words(text: str) -> list[str]:
    """``"a b c"`` -> ``["a", " b", " c"]``: word by word, joining back to ``text``."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]] if text else []


def _split_arguments(arguments: str, size: int = 7) -> list[str]:
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def _sse(obj: Any) -> bytes:
    return b"data: " + _dumps(obj) + b"\n\n"


async def _stream_answer(request: web.Request, answer: ChatAnswer, include_usage: bool) -> web.StreamResponse:
    model = answer.model
    delay = _chunk_delay(request, model)
    if isinstance(delay, web.Response):
        return delay
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if "cut-stream" in model:
        for c in chat_chunks(answer, include_usage)[:3]:
            await resp.write(_sse(c))
        return _abort(request, resp)
    if "bad-sse" in model:
        await resp.write(_sse(chat_chunks(answer, include_usage)[0]))
        await resp.write(b'data: {"id": "chatcmpl-broken", "choices": [{"delta": \n\n')
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp
    no_done = "no-done" in model
    for i, c in enumerate(chat_chunks(answer, include_usage, finish=not no_done)):
        if i and delay:
            await asyncio.sleep(delay)
        await resp.write(_sse(c))
    if not no_done:
        await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


def _abort(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection mid-response, as a crashing provider or proxy would."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return resp


async def _send_faulty_json(request: web.Request, answer: ChatAnswer) -> web.StreamResponse:
    body = _dumps(chat_completion_json(answer))
    if "bad-sse" in answer.model:
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    # cut-stream: promise the whole body, send half of it, then drop the connection.
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    return _abort(request, resp)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.chat += 1
    call = state.chat
    body = await _read_json(request)
    if isinstance(body, web.Response):
        state.record(request, None)
        return body
    model = str(body.get("model", ""))
    state.by_model[model] += 1
    state.record(request, body)
    fault = await _apply_delay_and_faults(request, state, model)
    if fault is not None:
        return fault
    if "reject-stream-options" in model and "stream_options" in body:
        return error_response(400, "Unrecognized request argument supplied: stream_options", "stream_options")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return error_response(400, "'messages' must be a non-empty array")
    if "invalid-json" in model:
        return _invalid_json(bool(body.get("stream")))
    answer = make_chat_answer(body, call)
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await _stream_answer(request, answer, include_usage)
    if "cut-stream" in model or "bad-sse" in model:
        return await _send_faulty_json(request, answer)
    return _json_response(chat_completion_json(answer))


# --------------------------------------------------------------------------- embeddings


def embedding_items(raw: Any) -> list[str | list[int]] | None:
    """Split OpenAI's ``input`` (str | list[str] | list[int] | list[list[int]]) into items."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(x, int) for x in raw):
        return [list(raw)]
    if all(isinstance(x, str) for x in raw):
        return list(raw)
    if all(isinstance(x, list) and x and all(isinstance(t, int) for t in x) for x in raw):
        return [list(x) for x in raw]
    return None


def embedding_vector(item: str | list[int], dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic vector from sha256 of the item, exact in float32 (so base64 matches)."""
    seed = item.encode() if isinstance(item, str) else json.dumps(item).encode()
    digest = b""
    block = hashlib.sha256(seed).digest()
    while len(digest) < 2 * dimensions:
        digest += block
        block = hashlib.sha256(block).digest()
    raw = [int.from_bytes(digest[2 * i : 2 * i + 2], "little") / 65535 * 2 - 1 for i in range(dimensions)]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *raw)))


def words_vector(item: str | list[int], dimensions: int = WORDS_DIMENSIONS) -> list[float]:
    """Unit bag of lower-cased letter-words, each hashed (sha256) to one of ``dimensions`` slots.

    Digits are invisible, so "order 48213" and "order 48231" embed identically: a
    semantic cache must then rely on its guards, as with a real model that scores them 0.99.
    Token arrays count each token as a word. Exact in float32, like :func:`embedding_vector`.
    """
    words = re.findall(r"[^\W\d_]+", item.lower()) if isinstance(item, str) else [str(t) for t in item]
    counts = [0.0] * dimensions
    for word in words:
        counts[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % dimensions] += 1.0
    norm = sum(c * c for c in counts) ** 0.5 or 1.0
    raw = [c / norm for c in counts]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *raw)))


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


_BAD_VECTORS: dict[str, Any] = {"null": None, "mixed": [1.5, "x", {}], "bool": [True, 0.5]}


async def embeddings(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.embeddings += 1
    body = await _read_json(request)
    if isinstance(body, web.Response):
        state.record(request, None)
        return body
    model = str(body.get("model", ""))
    state.by_model[model] += 1
    state.record(request, body)
    items = embedding_items(body.get("input"))
    if items is not None:
        state.embedding_items += len(items)
    fault = await _apply_delay_and_faults(request, state, model)
    if fault is not None:
        return fault
    if items is None:
        return error_response(400, "'input' must be a string, an array of strings or token arrays")
    if "invalid-json" in model:
        return _invalid_json(stream=False)
    words = WORDS_MODEL in model
    dimensions = int(body.get("dimensions") or (WORDS_DIMENSIONS if words else EMBEDDING_DIMENSIONS))
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(items):
        vector = words_vector(item, dimensions) if words else embedding_vector(item, dimensions)
        embedding: Any = encode_base64(vector) if as_base64 else vector
        if "bad-vectors" in model and isinstance(item, str):
            embedding = next((bad for word, bad in _BAD_VECTORS.items() if word in item), embedding)
        data.append(
            {
                "object": "embedding",
                "index": 0 if "dup-index" in model else i,
                "embedding": embedding,
            }
        )
    tokens = sum(_words(x) if isinstance(x, str) else len(x) for x in items)
    answer: dict[str, Any] = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    if "vendor-fields" in model:
        answer = _with_vendor_fields(answer, items, state.embeddings, oversized="oversized" in model)
    return _json_response(answer)


def _with_vendor_fields(answer: dict[str, Any], items: list[str | list[int]], call: int,
                        oversized: bool) -> dict[str, Any]:
    """``answer`` with unknown fields at every level (the ``vendor-fields`` mode)."""
    answer = {"id": f"emb-{call}", **answer, "x_vendor": {"region": "eu"}}
    answer["usage"] |= {"x_unit": "token", "x_call": call}
    if oversized:
        answer["x_padding"] = "p" * 20_000
    for item, entry in zip(items, answer["data"], strict=True):
        entry["x_item"] = {"chars": len(item)}
    return answer


# --------------------------------------------------------------------------- misc routes


async def list_models(request: web.Request) -> web.Response:
    request.app[STATE_KEY].models += 1
    request.app[STATE_KEY].record(request, None)
    names = ["stub-model", "stub-embedding", *(f"stub-{name}" for name in (*FAULT_MODELS, *MODE_MODELS))]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "stub"} for n in names]
    return _json_response({"object": "list", "data": data})


async def get_stats(request: web.Request) -> web.Response:
    return _json_response(request.app[STATE_KEY].stats())


async def post_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json_response({"ok": True})


async def post_delay(request: web.Request) -> web.Response:
    body = await _read_json(request)
    if isinstance(body, web.Response):
        return body
    request.app[STATE_KEY].delay_ms = float(body.get("ms", 0))
    return _json_response({"ok": True, "delay_ms": request.app[STATE_KEY].delay_ms})


async def get_last(request: web.Request) -> web.Response:
    return _json_response(request.app[STATE_KEY].last)


async def get_requests(request: web.Request) -> web.Response:
    """The last :data:`RECORDED_REQUESTS` requests, oldest first: ``[{"path", "query", "headers", "body"}]``."""
    return _json_response(list(request.app[STATE_KEY].requests))


def make_app(delay_ms: float = 0.0) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = StubState(delay_ms=delay_ms)
    for prefix in ("/v1", ""):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_get(f"{prefix}/models", list_models)
    app.router.add_get("/_stats", get_stats)
    app.router.add_post("/_reset", post_reset)
    app.router.add_post("/_delay", post_delay)
    app.router.add_get("/_last", get_last)
    app.router.add_get("/_requests", get_requests)
    return app


# --------------------------------------------------------------------------- server process


async def serve(host: str, port: int, delay_ms: float, parent_pid: int | None) -> None:
    """Serve until SIGTERM/SIGINT (or until ``parent_pid`` is no longer our parent)."""
    runner = web.AppRunner(make_app(delay_ms), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock, backlog=2048)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The parent reads this line to learn the port; nothing else goes to stdout.
    print(f"{READY_PREFIX}{sock.getsockname()[1]}", flush=True)
    watcher = asyncio.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Exit when the parent dies, so a killed test run leaves no stray server behind."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    stop.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this parent dies")
    args = parser.parse_args(argv)
    coro = serve(args.host, args.port, args.delay_ms, args.parent_pid)
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro)
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)


# --------------------------------------------------------------------------- client side


class StubUpstream:
    """Runs the stub server in a subprocess on a free port, and talks to its control API.

    Usage::

        with StubUpstream() as stub:          # or stub.start() ... stub.stop()
            config_api_base = stub.url        # "http://127.0.0.1:PORT/v1"
            ...
            assert stub.calls()["chat"] == 1

    The control methods are blocking (stdlib ``urllib``); each is one loopback
    round trip to a separate process, so they are safe to call from async tests.
    """

    def __init__(
        self,
        delay_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        self.delay_ms = delay_ms
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no ``/v1``), where the control endpoints live."""
        if self._proc is None:
            raise RuntimeError("StubUpstream is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL to configure as ``api_base``: ``http://HOST:PORT/v1``."""
        return f"{self.base_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> StubUpstream:
        if self._proc is not None:
            return self
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--delay-ms",
            str(self.delay_ms),
            "--parent-pid",
            str(os.getpid()),
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"stub upstream not ready after {self.startup_timeout} s")
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if ready:
                byte = os.read(self._proc.stdout.fileno(), 1)
                if not byte:
                    code = self._proc.wait()
                    raise RuntimeError(f"stub upstream exited with code {code} before ready")
                line += byte
        text = line.decode().strip()
        if not text.startswith(READY_PREFIX):
            raise RuntimeError(f"unexpected output from stub upstream: {text!r}")
        return int(text[len(READY_PREFIX) :])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> StubUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def calls(self) -> dict[str, Any]:
        """Counters since start/reset: ``{"chat", "embeddings", "embedding_items", "models",
        "by_model": {model: n}, "delay_ms"}``. Failed and faulty calls are counted too."""
        result: dict[str, Any] = self._request("GET", "/_stats")
        return result

    def reset(self) -> None:
        """Zero the counters and forget the last request (the delay is kept)."""
        self._request("POST", "/_reset", {})

    def set_delay(self, ms: float) -> None:
        """Default delay before every chat/embeddings answer (``x-stub-delay-ms`` overrides)."""
        self._request("POST", "/_delay", {"ms": ms})
        self.delay_ms = ms

    def last_request(self) -> dict[str, Any] | None:
        """The last chat/embeddings request as received: ``{"path", "headers", "body"}``."""
        result: dict[str, Any] | None = self._request("GET", "/_last")
        return result

    def requests(self, model: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Requests received since start/reset (the last 200), oldest first, as
        ``{"path", "query", "headers", "body"}`` (``body`` is ``None`` when not a JSON object);
        only those whose body's ``model`` is ``model`` / whose path ends with ``path``, if given."""
        seen: list[dict[str, Any]] = self._request("GET", "/_requests")
        return [
            r for r in seen
            if (model is None or (r["body"] or {}).get("model") == model)
            and (path is None or r["path"].endswith(path))
        ]

    def calls_for(self, model: str) -> int:
        """How many chat/embeddings calls named ``model`` (``by_model``; streamed and failed ones too)."""
        return int(self.calls()["by_model"].get(model, 0))


if __name__ == "__main__":
    main()
