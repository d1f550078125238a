"""A stand-in for Cohere's v2 API (https://docs.cohere.com/v2/reference/chat), which is not
OpenAI's: LiteLLM's SDK reaches it through its own HTTP code and translation, so a
``cohere_chat/`` or ``cohere/`` entry exercises Reprise's SDK upstream end to end.

- ``POST /v2/chat``: ``{"model", "messages", "stream"?}`` → ``{"id", "message": {"role",
  "content": [{"type": "text", "text"}]}, "finish_reason": "COMPLETE", "usage": {...}}``, or
  with ``stream: true`` its events (``message-start``, ``content-delta``..., ``message-end``)
  as newline-delimited JSON, the framing LiteLLM's Cohere code reads.
- ``POST /v2/embed``: ``{"model", "texts", "input_type", "embedding_types"}`` →
  ``{"id", "embeddings": {"float": [[...]]}, "texts", "meta"}``.

Only ``Authorization: bearer <api_key>`` is accepted; anything else is a 401/404 counted
in :attr:`rejected`. A model named ``overloaded`` answers 429 (errors are not cached); one
named ``cut`` drops the connection in the middle of its stream, before ``message-end``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer


class CohereStandIn(ThreadedServer):
    def __init__(self, api_key: str = "co-key") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def _reject(self, status: int, why: str) -> web.Response:
        self.rejected.append(why)
        return web.json_response({"message": why}, status=status)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path not in ("/v2/chat", "/v2/embed"):
            return self._reject(404, f"{request.method} {request.path}")
        if request.headers.get("Authorization", "").lower() != f"bearer {self.api_key}":
            return self._reject(401, "authorization")
        body = json.loads(await request.read())
        self.requests.append({"path": request.path, "body": body})
        if body.get("model") == "overloaded":
            return web.json_response({"message": "You are past the rate limit"}, status=429)
        if request.path == "/v2/embed":
            vectors = [[float(len(text)), 0.5] for text in body["texts"]]
            return web.json_response({"id": f"emb-{len(self.requests)}", "embeddings": {"float": vectors},
                                      "texts": body["texts"], "meta": {"billed_units": {"input_tokens": 2}}})
        text = f"cohere {body['model']} answer {len(self.requests)}"
        usage = {"billed_units": {"input_tokens": 5, "output_tokens": 4},
                 "tokens": {"input_tokens": 5, "output_tokens": 4}}
        if not body.get("stream"):
            return web.json_response({"id": f"co-{len(self.requests)}", "finish_reason": "COMPLETE", "usage": usage,
                                      "message": {"role": "assistant",
                                                  "content": [{"type": "text", "text": text}]}})
        response = web.StreamResponse(headers={"Content-Type": "application/stream+json"})
        await response.prepare(request)
        events: list[dict[str, Any]] = [
            {"type": "message-start", "id": f"co-{len(self.requests)}",
             "delta": {"message": {"role": "assistant", "content": []}}},
            {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
            *({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": word + " "}}}}
              for word in text.split(" ")),
            {"type": "content-end", "index": 0},
            {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}},
        ]
        if body["model"] == "cut":  # the connection drops before message-end
            events = events[:4]
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        if body["model"] == "cut":
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response
