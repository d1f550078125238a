"""A stand-in provider whose answers are too large to hold, or framed as some compatible servers frame them.

Serves ``POST /v1/chat/completions``, ``/v1/responses`` and ``/v1/completions`` in OpenAI's
shapes, answering what the ``model`` names (each after 0.4 s, so identical requests sent
together are in flight together):

* ``huge-json``: a 2xx plain answer of :data:`HUGE` bytes, sent chunked (no length
  announced: only reading says how long it is);
* ``huge-error``: a 500 whose error body is :data:`HUGE` bytes, with its ``Content-Length``;
* ``long``: a valid stream of more than :data:`LONG` bytes (a Responses stream's
  ``response.completed``, which repeats the whole text, is then itself longer than that);
* ``medium``: a valid stream of :data:`MEDIUM` bytes: kept, but more than a client may fall behind;
* ``done``: a small valid stream; a Responses one ends with ``data: [DONE]`` after
  ``response.completed``, as some OpenAI-compatible servers send it.

Answers are numbered per call, so a test tells a stored answer from a fresh one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

HUGE = 65 * 2**20
"""Over the gateway's 64 MiB bound on an answer read whole."""
LONG = 33 * 2**20
"""Over the gateway's 32 MiB bound on a recorded stream."""
MEDIUM = 16 * 2**20
"""Over the 8 MiB a streaming client may fall behind, under the 32 MiB bound on a recorded stream."""
_PIECE = 64 * 1024
PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/completions")


def _sse(data: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode()


class OversizedStandIn(ThreadedServer):
    url_path = "/v1"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def calls(self, marker: str) -> int:
        """Requests whose body mentions ``marker`` (a test's unique text)."""
        return sum(1 for body in self.requests if marker in json.dumps(body))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path not in PATHS:
            self.rejected.append(request.path)
            return web.json_response({"error": {"message": "not found"}}, status=404)
        body = json.loads(await request.read())
        self.requests.append(body)
        number = len(self.requests)
        await asyncio.sleep(0.4)
        model = body["model"]
        if "huge-error" in model:
            message = "x" * HUGE
            return web.json_response({"error": {"message": message, "type": "server_error"}}, status=500)
        kind = request.path.removeprefix("/v1/")  # chat/completions, responses or completions
        if "huge-json" in model:
            return await self._chunked(request, self._plain(kind, number, "x" * HUGE))
        if not body.get("stream"):
            return web.json_response(self._plain(kind, number, f"answer {number}"))
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        text = ("y" * (LONG + _PIECE) if "long" in model else "m" * MEDIUM if "medium" in model
                else f"answer {number}")
        for event in self._events(kind, number, text, final_done="done" in model):
            await stream.write(event)
        await stream.write_eof()
        return stream

    @staticmethod
    async def _chunked(request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        raw = json.dumps(answer).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(raw), 2**20):
            await response.write(raw[start:start + 2**20])
        await response.write_eof()
        return response

    @staticmethod
    def _plain(kind: str, number: int, text: str) -> dict[str, Any]:
        if kind == "responses":
            message = {"id": f"msg_{number}", "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}
            return {"id": f"resp_{number}", "object": "response", "status": "completed", "output": [message]}
        if kind == "completions":
            return {"id": f"cmpl-{number}", "object": "text_completion",
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}]}
        return {"id": f"chatcmpl-{number}", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}]}

    def _events(self, kind: str, number: int, text: str, final_done: bool) -> list[bytes]:
        pieces = [text[i:i + _PIECE] for i in range(0, len(text), _PIECE)]
        if kind == "responses":
            response = self._plain(kind, number, text)
            ids = {"item_id": f"msg_{number}", "output_index": 0, "content_index": 0}
            events = [_sse({"type": "response.created", "sequence_number": 0,
                            "response": {**response, "status": "in_progress", "output": []}}, "response.created")]
            events += [_sse({"type": "response.output_text.delta", "sequence_number": i + 1, **ids, "delta": piece},
                            "response.output_text.delta") for i, piece in enumerate(pieces)]
            events.append(_sse({"type": "response.completed", "sequence_number": len(pieces) + 1,
                                "response": response}, "response.completed"))
            return events + [b"data: [DONE]\n\n"] if final_done else events
        if kind == "completions":
            head: dict[str, Any] = {"id": f"cmpl-{number}", "object": "text_completion"}
            events = [_sse({**head, "choices": [{"text": p, "index": 0, "finish_reason": None}]}) for p in pieces]
            events.append(_sse({**head, "choices": [{"text": "", "index": 0, "finish_reason": "stop"}]}))
            return [*events, b"data: [DONE]\n\n"]
        head = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        events = [_sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p},
                                             "finish_reason": None}]}) for p in pieces]
        events.append(_sse({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        return [*events, b"data: [DONE]\n\n"]


def oversized_config(standin: OversizedStandIn, master_key: str) -> dict[str, Any]:
    """A gateway config with one model per behaviour above, all caching on."""
    models = [{"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": standin.url,
                                                       "api_key": "sk-upstream", "timeout": 30}}
              for name in ("huge-json", "huge-error", "long", "medium", "done")]
    return {
        "model_list": models,
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"cache": True, "cache_params": {
            "type": "local", "ttl": 600,
            "supported_call_types": ["acompletion", "completion", "aresponses", "responses",
                                     "atext_completion", "text_completion"]}},
    }
