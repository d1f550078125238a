"""A stand-in for Anthropic's Messages API, as its public reference describes it, and nothing else.

https://docs.anthropic.com/en/api/messages and .../build-with-claude/streaming: ``POST
/v1/messages`` with ``x-api-key``, ``anthropic-version: 2023-06-01`` and a JSON body whose
``max_tokens`` is required, whose ``system`` is top level, whose turns are ``user`` and
``assistant`` only and whose content blocks are ``text``, ``image``, ``tool_use`` and
``tool_result``, whose tools are ``name``, ``description``, ``input_schema`` and ``strict``
(strict tool use). Anything else (another path, a bearer token, an OpenAI-only field, a
``system`` turn...) is answered 400/401/404 in Anthropic's error shape and counted in
:attr:`AnthropicStandIn.rejected`, so a test can assert it stayed zero.

Answers: a text block naming the call number (so a cache hit is told from a new call),
or, when the request has tools (and ``tool_choice`` is not ``none``), a short text block
and a ``tool_use`` of the first tool. Models steer failures: ``claude-limited`` answers
429, ``claude-overloaded`` 529; streamed, ``claude-cut`` stops before ``message_stop`` and
``claude-error-mid`` sends an ``error`` event; ``claude-stops-<reason>`` answers (whole or
streamed) with ``stop_reason`` ``<reason>``, for the stop reasons a test names (Anthropic adds
new ones); ``claude-thinks`` answers with a ``thinking`` block (its ``thinking_delta`` and
``signature_delta`` when streamed) before the text, as extended thinking does, and
``claude-cites`` with a text block carrying ``citations`` (a ``citations_delta`` when streamed).
Runs an aiohttp server in a thread.

``POST /v1/messages/count_tokens`` (https://docs.anthropic.com/en/api/messages-count-tokens)
takes the same headers and the Messages body without the answer's settings (``model``,
``messages``, ``system``, ``tools``, ``tool_choice``, ``thinking``, ``cache_control``; no
``max_tokens``) and answers ``{"input_tokens": N}`` with N = :func:`token_count` of the body;
anything else is a 400 (kept in ``rejected``), ``claude-limited`` a 429. Counted bodies are
kept in :attr:`AnthropicStandIn.counted`, apart from the Messages ``requests``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

TOP_LEVEL = frozenset({"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
                       "top_p", "top_k", "tools", "tool_choice", "metadata"})
COUNT_TOP_LEVEL = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control"})
BLOCKS = {"user": frozenset({"text", "image", "tool_result"}), "assistant": frozenset({"text", "tool_use"})}


def _error(status: int, kind: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": message}},
                             status=status, headers=headers)


def body_problem(body: Any) -> str | None:
    """Why ``body`` is not a Messages API request, or None."""
    if not isinstance(body, dict):
        return "body: not a JSON object"
    extra = set(body) - TOP_LEVEL
    if extra:
        return f"{sorted(extra)}: Extra inputs are not permitted"
    if not isinstance(body.get("model"), str) or not isinstance(body.get("max_tokens"), int):
        return "model and max_tokens: Field required"
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not (
            isinstance(system, list) and all(isinstance(b, dict) and b.get("type") == "text" for b in system)):
        return "system: must be a string or text blocks"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or messages[0].get("role") != "user":
        return "messages: must be a non-empty list starting with a user turn"
    for i, turn in enumerate(messages):
        problem = _turn_problem(turn)
        if problem:
            return f"messages.{i}: {problem}"
    return _tools_problem(body)


def count_problem(body: Any) -> str | None:
    """Why ``body`` is not a ``count_tokens`` request, or None."""
    if not isinstance(body, dict):
        return "body: not a JSON object"
    extra = set(body) - COUNT_TOP_LEVEL
    if extra:
        return f"{sorted(extra)}: Extra inputs are not permitted"
    thinking = body.get("thinking")
    if thinking is not None and thinking != {"type": "disabled"} and not (
            isinstance(thinking, dict) and thinking.get("type") == "enabled"
            and isinstance(thinking.get("budget_tokens"), int) and thinking["budget_tokens"] >= 1024):
        return "thinking: disabled, or enabled with budget_tokens >= 1024"
    if body.get("cache_control") not in (None, {"type": "ephemeral"}):
        return "cache_control: {type: ephemeral}"
    messages_body = {name: value for name, value in body.items() if name in TOP_LEVEL}
    return body_problem({**messages_body, "max_tokens": 1})


def token_count(body: dict[str, Any]) -> int:
    """The stand-in's count: a quarter of the body's compact JSON without ``model``, plus one."""
    rest = {name: value for name, value in body.items() if name != "model"}
    return len(json.dumps(rest, sort_keys=True, separators=(",", ":"))) // 4 + 1


def _tools_problem(body: dict[str, Any]) -> str | None:
    for tool in body.get("tools") or []:
        if set(tool) - {"name", "description", "input_schema", "strict"} or "input_schema" not in tool \
                or not isinstance(tool.get("strict", False), bool):
            return "tools: each tool is {name, description, input_schema, strict (a boolean)}"
    choice = body.get("tool_choice")
    if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice.type: invalid"
    if set(body.get("metadata") or {}) - {"user_id"}:
        return "metadata: only user_id"
    return None


def _turn_problem(turn: Any) -> str | None:
    if not isinstance(turn, dict) or set(turn) != {"role", "content"} or turn["role"] not in BLOCKS:
        return "a turn is {role: user|assistant, content}"
    content = turn["content"]
    if isinstance(content, str):
        return None
    if not isinstance(content, list) or not content:
        return "content: a string or a non-empty list of blocks"
    for block in content:
        problem = _block_problem(turn["role"], block)
        if problem:
            return problem
    return None


def _block_problem(role: str, block: Any) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in BLOCKS[role]:
        return f"block type {kind!r} not allowed in a {role} turn"
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64" and not (source.get("media_type") and source.get("data")):
            return "image.source: base64 needs media_type and data"
        if source.get("type") not in ("base64", "url"):
            return "image.source.type: base64 or url"
    if kind == "tool_use" and not isinstance(block.get("input"), dict):
        return "tool_use.input: must be an object"
    if kind == "tool_result" and not isinstance(block.get("tool_use_id"), str):
        return "tool_result.tool_use_id: Field required"
    return None


STOPS_PREFIX = "claude-stops-"
CITATION = {"type": "char_location", "cited_text": "hi", "document_index": 0, "document_title": None,
            "start_char_index": 0, "end_char_index": 2}


def _stop_reason(model: str, use_tool: bool) -> str:
    if model.startswith(STOPS_PREFIX):
        return model.removeprefix(STOPS_PREFIX)
    return "tool_use" if use_tool else "end_turn"


def block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """A content block as Anthropic streams it, up to (without) its ``content_block_stop``."""
    def delta(**fields: Any) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": fields}

    if block["type"] == "thinking":
        start = {"type": "thinking", "thinking": ""}
        deltas = [delta(type="thinking_delta", thinking=block["thinking"]),
                  delta(type="signature_delta", signature=block["signature"])]
    elif block["type"] == "text":
        start, text = {"type": "text", "text": ""}, block["text"]
        deltas = [delta(type="text_delta", text=piece) for piece in (text[: len(text) // 2], text[len(text) // 2:])]
        deltas += [delta(type="citations_delta", citation=c) for c in block.get("citations") or ()]
    else:
        start, args = {**block, "input": {}}, json.dumps(block["input"])
        deltas = [delta(type="input_json_delta", partial_json=piece) for piece in ("", args[:7], args[7:])]
    return [{"type": "content_block_start", "index": index, "content_block": start}, *deltas]


class AnthropicStandIn(ThreadedServer):
    def __init__(self, api_key: str = "anthropic-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.counted: list[dict[str, Any]] = []
        super().__init__()

    def _reject(self, response: web.Response, why: str) -> web.Response:
        self.rejected.append(why)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.method != "POST" or request.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self._reject(_error(404, "not_found_error", "Not found"), f"{request.method} {request.path}")
        if "Authorization" in request.headers:
            return self._reject(_error(401, "authentication_error", "bearer token sent"), "authorization")
        if request.headers.get("x-api-key") != self.api_key:
            return self._reject(_error(401, "authentication_error", "invalid x-api-key"), "x-api-key")
        if request.headers.get("anthropic-version") != "2023-06-01":
            return self._reject(_error(400, "invalid_request_error", "anthropic-version"), "anthropic-version")
        if request.content_type != "application/json":
            return self._reject(_error(400, "invalid_request_error", "content-type"), "content-type")
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if request.path.endswith("/count_tokens"):
            return self._count(body)
        problem = body_problem(body)
        if problem is not None:
            return self._reject(_error(400, "invalid_request_error", problem), problem)
        self.requests.append(body)
        call, model = len(self.requests), body["model"]
        if model == "claude-limited":
            return _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit", **{
                "retry-after": "1"})
        if model == "claude-overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        message = self._answer(body, call)
        headers = {"request-id": f"req_{call}", "anthropic-ratelimit-requests-remaining": str(1000 - call)}
        if not body.get("stream"):
            return web.json_response(message, headers=headers)
        return await self._stream(request, message, headers)

    def _count(self, body: Any) -> web.Response:
        problem = count_problem(body)
        if problem is not None:
            return self._reject(_error(400, "invalid_request_error", problem), problem)
        self.counted.append(body)
        if body["model"] == "claude-limited":
            return _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit", **{
                "retry-after": "1"})
        return web.json_response({"input_tokens": token_count(body)},
                                 headers={"request-id": f"req_count_{len(self.counted)}"})

    @staticmethod
    def _answer(body: dict[str, Any], call: int) -> dict[str, Any]:
        last = body["messages"][-1]["content"]
        said = last if isinstance(last, str) else " ".join(b.get("text", "") for b in last if b["type"] == "text")
        tools = body.get("tools") or []
        use_tool = tools and (body.get("tool_choice") or {}).get("type") != "none"
        content: list[dict[str, Any]] = [{"type": "text", "text": f"anthropic {body['model']} answer {call}: {said}"}]
        if use_tool:
            content = [{"type": "text", "text": "Let me check."},
                       {"type": "tool_use", "id": f"toolu_{call:04d}", "name": tools[0]["name"],
                        "input": {"city": "Paris", "call": call}}]
        if body["model"] == "claude-thinks":
            content.insert(0, {"type": "thinking", "thinking": "The user greets me.", "signature": "c2lnbmVk"})
        if body["model"] == "claude-cites":
            content[0]["citations"] = [CITATION]
        return {"id": f"msg_{call:04d}", "type": "message", "role": "assistant", "model": body["model"],
                "content": content, "stop_reason": _stop_reason(body["model"], use_tool), "stop_sequence": None,
                "usage": {"input_tokens": 10 + call, "output_tokens": 5, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": 3}}

    async def _stream(self, request: web.Request, message: dict[str, Any],
                      headers: dict[str, str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={**headers, "content-type": "text/event-stream"})
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            raw = f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
            half = len(raw) // 2  # two writes: the gateway must not depend on event boundaries
            await response.write(raw[:half])
            await response.write(raw[half:])

        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**message["usage"], "output_tokens": 1}}
        await send({"type": "message_start", "message": start})
        await send({"type": "ping"})
        for index, block in enumerate(message["content"]):
            for event in block_events(index, block):
                await send(event)
            if message["model"] == "claude-cut":
                return response  # the connection ends before the message does
            if message["model"] == "claude-error-mid":
                await send({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return response
            await send({"type": "content_block_stop", "index": index})
        await send({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": message["usage"]["output_tokens"]}})
        await send({"type": "message_stop"})
        await response.write_eof()
        return response
