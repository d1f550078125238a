"""A stand-in for OpenAI's Responses API and legacy completions, as OpenAI's reference describes them.

https://platform.openai.com/docs/api-reference/responses (``POST /v1/responses``, typed
streaming events each with a ``sequence_number``, ``response.completed`` last) and
https://platform.openai.com/docs/api-reference/completions (``POST /v1/completions``,
``text_completion`` chunks then ``data: [DONE]``). Anything else (another path, no or a
wrong bearer key, a body that is not a JSON object, a gateway-only field such as
``cache`` or ``api_base``, a ``previous_response_id`` it never stored) is answered 400,
401 or 404 and counted in :attr:`OpenAIApisStandIn.rejected`.

Answers are unique per call (``answer <n>``), so a test tells a cached answer from a
fresh one. The ``model`` chooses a behaviour: ``fail`` (HTTP 500), ``slow`` (0.4 s before
answering), ``cut`` (a stream cut before its end), ``failed`` (``response.failed``),
``incomplete`` (``status: incomplete`` / ``response.incomplete``), ``short`` (a stream that
ends cleanly, HTTP-wise, before its last event), ``error-field`` (a plain completion, HTTP 200,
whose finished choice has a top-level ``error`` object beside it). ``background: true``
answers a ``queued`` response. Runs an aiohttp server in a thread.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

UPSTREAM_KEY = "sk-upstream"
GATEWAY_FIELDS = ("cache", "api_base", "api_key", "extra_headers", "mock_response", "base_url", "caching")


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": param, "code": None}},
                             status=status)


class OpenAIApisStandIn(ThreadedServer):
    url_path = "/v1"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stored: set[str] = set()
        super().__init__()

    def calls(self, path: str, marker: str) -> int:
        """Requests to ``path`` whose body mentions ``marker`` (a test's unique text)."""
        return sum(1 for r in self.requests if r["path"] == path and marker in json.dumps(r["body"]))

    def _reject(self, response: web.Response, why: str) -> web.Response:
        self.rejected.append(why)
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path not in ("/v1/responses", "/v1/completions"):
            return self._reject(_error(404, f"Invalid URL ({request.method} {request.path})"), request.path)
        if request.headers.get("Authorization") != f"Bearer {UPSTREAM_KEY}":
            return self._reject(_error(401, "Incorrect API key provided"), "authorization")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return self._reject(_error(400, "body must be a JSON object with a model"), "body")
        leaked = [name for name in GATEWAY_FIELDS if name in body]
        if leaked:
            return self._reject(_error(400, f"Unrecognized request argument supplied: {leaked[0]}", leaked[0]),
                                f"field {leaked[0]}")
        self.requests.append({"path": request.path, "body": body})
        number = len(self.requests)
        model = body["model"]
        if "slow" in model:
            await asyncio.sleep(0.4)
        if "fail" in model and "failed" not in model:
            return _error(500, "The server had an error while processing your request.")
        if request.path == "/v1/completions":
            return await self._completion(request, body, number)
        return await self._response(request, body, number)

    # -- /v1/responses -----------------------------------------------------------------

    async def _response(self, request: web.Request, body: dict[str, Any], number: int) -> web.StreamResponse:
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return self._reject(_error(404, f"Previous response with id '{previous}' not found.",
                                       "previous_response_id"), "previous_response_id")
        if body.get("input") is None and previous is None:
            return self._reject(_error(400, "Missing required parameter: 'input'.", "input"), "input")
        text = f"answer {number} to {json.dumps(body.get('input'))}"
        response = self._response_object(body, number, text)
        if body.get("store", True):
            self.stored.add(response["id"])
        if body.get("background"):
            return web.json_response({**response, "status": "queued", "output": [], "usage": None})
        if not body.get("stream"):
            if "incomplete" in body["model"]:
                response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
            return web.json_response(response, headers={"x-request-id": f"req_{number}"})
        return await self._stream_response(request, body, response)

    @staticmethod
    def _response_object(body: dict[str, Any], number: int, text: str) -> dict[str, Any]:
        message = {"id": f"msg_{number}", "type": "message", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        return {
            "id": f"resp_{number}", "object": "response", "created_at": 1741476542, "status": "completed",
            "error": None, "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": "gpt-4.1-2025-04-14",
            "output": [message], "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 123},
            "user": body.get("user"), "metadata": body.get("metadata") or {},
        }

    async def _stream_response(self, request: web.Request, body: dict[str, Any],
                               response: dict[str, Any]) -> web.StreamResponse:
        model = body["model"]
        message = response["output"][0]
        text = message["content"][0]["text"]
        opened = {**response, "status": "in_progress", "output": [], "usage": None}
        ids = {"item_id": message["id"], "output_index": 0, "content_index": 0}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": opened},
            {"type": "response.in_progress", "response": opened},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {**message, "status": "in_progress", "content": []}},
            {"type": "response.content_part.added", **ids,
             "part": {"type": "output_text", "text": "", "annotations": []}},
        ]
        words = text.split(" ")
        events += [{"type": "response.output_text.delta", **ids, "delta": (" " if i else "") + word}
                   for i, word in enumerate(words)]
        events += [
            {"type": "response.output_text.done", **ids, "text": text},
            {"type": "response.content_part.done", **ids, "part": message["content"][0]},
            {"type": "response.output_item.done", "output_index": 0, "item": message},
        ]
        if "failed" in model:
            error = {"code": "server_error", "message": "The model failed to generate a response."}
            events.append({"type": "response.failed", "response": {**response, "status": "failed", "error": error}})
        elif "incomplete" in model:
            events.append({"type": "response.incomplete", "response": {
                **response, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}})
        else:
            events.append({"type": "response.completed", "response": response})
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for number, event in enumerate(events):
            if "cut" in model and number == 5:
                assert request.transport is not None
                request.transport.abort()  # the connection drops mid-answer
                return stream
            if "short" in model and number == 5:
                break  # a well-formed HTTP end, but the answer is cut
            data = json.dumps({**event, "sequence_number": number})
            await stream.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
        await stream.write_eof()
        return stream

    # -- /v1/completions -----------------------------------------------------------------

    async def _completion(self, request: web.Request, body: dict[str, Any], number: int) -> web.StreamResponse:
        prompt = body.get("prompt")
        if prompt is None:
            return self._reject(_error(400, "Missing required parameter: 'prompt'.", "prompt"), "prompt")
        text = f" answer {number} to {json.dumps(prompt)}"
        head = {"id": f"cmpl-{number}", "object": "text_completion", "created": 1741476542,
                "model": "gpt-3.5-turbo-instruct"}
        usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        if not body.get("stream"):
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
            failed = {"error": {"message": "upstream overloaded", "type": "server_error"}} \
                if "error-field" in body["model"] else {}
            return web.json_response({**head, "choices": [choice], "usage": usage, **failed})
        chunks = [{**head, "choices": [{"text": word, "index": 0, "logprobs": None, "finish_reason": None}]}
                  for word in (" " + word for word in text.split())]
        chunks.append({**head, "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": usage})
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await stream.prepare(request)
        for i, chunk in enumerate(chunks):
            if "cut" in body["model"] and i == 3:
                assert request.transport is not None
                request.transport.abort()
                return stream
            if "short" in body["model"] and i == 3:
                await stream.write_eof()  # a well-formed HTTP end, but no finish_reason nor [DONE]
                return stream
            await stream.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await stream.write(b"data: [DONE]\n\n")
        await stream.write_eof()
        return stream


def standin_config(standin: OpenAIApisStandIn, master_key: str) -> dict[str, Any]:
    """A gateway config: one model per behaviour above, a mock model, and an Azure one."""
    def entry(name: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": standin.url,
                                                        "api_key": UPSTREAM_KEY, "timeout": 5}}
    models = [entry(name) for name in ("gpt-4.1", "slow-model", "fail-model", "cut-model", "failed-model",
                                       "incomplete-model", "short-model", "slow-incomplete-model", "slow-failed-model",
                                       "error-field-model")]
    models.append({"model_name": "mock", "litellm_params": {"model": "openai/mock", "mock_response": "mocked!"}})
    models.append({"model_name": "azure-gpt", "litellm_params": {
        "model": "azure/my-deployment", "api_base": standin.url, "api_key": "k", "api_version": "2024-10-21"}})
    return {
        "model_list": models,
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}},
    }
