"""A stand-in for Azure OpenAI's data plane, as its REST reference describes it, and nothing else.

https://learn.microsoft.com/azure/ai-services/openai/reference: ``POST
{endpoint}/openai/deployments/{deployment-id}/chat/completions?api-version=…`` (and
``/embeddings``), the key in an ``api-key`` header, OpenAI's bodies and SSE streams.
Anything else (another path, no or another ``api-version``, a bearer token, a wrong
key (or, with ``bearer_token`` set, anything but that Entra ID token), a body that is
not a JSON object) is answered 400/401/404 in Azure's error shape and counted in
:attr:`AzureStandIn.rejected`, so a test can assert it stayed zero.

A deployment named ``throttled`` answers 429 with ``retry-after``, for the
"provider errors are not cached" tests. Runs an aiohttp server in a thread.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer

PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class AzureStandIn(ThreadedServer):
    def __init__(self, api_key: str = "azure-key", api_version: str = "2024-10-21",
                 bearer_token: str | None = None) -> None:
        self.api_key = api_key
        self.bearer_token = bearer_token
        """With it, only ``Authorization: Bearer <bearer_token>`` (an Entra ID token) is accepted."""
        self.api_version = api_version
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def _reject(self, response: web.Response, why: str) -> web.Response:
        self.rejected.append(why)
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if request.method != "POST" or PATH.match(request.path) is None:
            return self._reject(_error(404, "404", "Resource not found"), f"{request.method} {request.path}")
        if request.query.get("api-version") != self.api_version:
            return self._reject(_error(400, "BadRequest", "API version not supported"), "api-version")
        if self.bearer_token is not None:
            if "api-key" in request.headers or \
                    request.headers.get("Authorization") != f"Bearer {self.bearer_token}":
                return self._reject(_error(401, "401", "invalid Entra ID token"), "bearer")
            return None
        if "Authorization" in request.headers:
            return self._reject(_error(401, "401", "bearer token sent instead of api-key"), "authorization")
        if request.headers.get("api-key") != self.api_key:
            return self._reject(_error(401, "401", "Access denied due to invalid subscription key"), "api-key")
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._reject(_error(400, "BadRequest", "body must be a JSON object"), "body")
        match = PATH.match(request.path)
        assert match is not None
        deployment, operation = match.groups()
        self.requests.append({"deployment": deployment, "operation": operation, "body": body})
        if deployment == "throttled":
            response = _error(429, "429", "Requests to the ChatCompletions_Create Operation have exceeded "
                                          "the rate limit")
            response.headers["retry-after"] = "1"
            return response
        if operation == "embeddings":
            inputs = body.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
                    for i in range(len(items))]
            return web.json_response({"object": "list", "data": data, "model": deployment,
                                      "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        text = f"azure {deployment} answer {len(self.requests)}"
        calls_tool = bool(body.get("tools"))
        if body.get("stream"):
            return await self._stream(request, deployment, text, calls_tool, body)
        message: dict[str, Any] = {"role": "assistant", "content": None if calls_tool else text}
        if calls_tool:
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": body["tools"][0]["function"]["name"],
                                                   "arguments": "{\"city\": \"Paris\"}"}}]
        return web.json_response(headers=self._rate_headers(), data={
            "id": f"chatcmpl-az{len(self.requests)}", "object": "chat.completion", "created": 1700000000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls_tool else "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        })

    def _rate_headers(self) -> dict[str, str]:
        """What Azure sends with an answer: remaining quota and this call's request ids."""
        return {"x-ratelimit-remaining-requests": str(1000 - len(self.requests)),
                "x-ratelimit-remaining-tokens": "90000", "apim-request-id": f"apim-{len(self.requests)}",
                "x-request-id": f"req-{len(self.requests)}", "x-internal-secret": "not for clients"}

    async def _stream(self, request: web.Request, deployment: str, text: str, calls_tool: bool,
                      body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self._rate_headers()})
        await response.prepare(request)
        base = {"id": f"chatcmpl-az{len(self.requests)}", "object": "chat.completion.chunk",
                "created": 1700000000, "model": "gpt-4o-2024-08-06"}
        chunks: list[dict[str, Any]] = [{**base, "choices": [], "prompt_filter_results": []}]  # Azure sends this first
        for word in text.split(" "):
            chunks.append({**base, "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]})
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4,
                                                             "total_tokens": 9}})
        for chunk in chunks:
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
