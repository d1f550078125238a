"""``mock_response`` deployments on ``/responses`` and ``/completions``: answers made locally.

As :class:`~reprise.server.upstream.MockUpstream` does for chat (LiteLLM's ``mock_response``),
so a config with mock models works on every route: a ``response`` object (or a
``text_completion``) whose text is the deployment's ``mock_response``, plain or as the
event stream OpenAI sends (https://platform.openai.com/docs/api-reference/responses-streaming),
which then goes through the cache like any provider's answer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from reprise.outcome import Outcome
from reprise.server.upstream import Deployment
from reprise.stream_lead import StreamReply


def _words(value: Any) -> int:
    return len((value if isinstance(value, str) else orjson.dumps(value).decode()).split())


def mock_response(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """A completed Responses API ``response`` answering ``body`` with the mock text."""
    text = deployment.mock_response or ""
    used, made = _words(body.get("input") or ""), len(text.split())
    message = {"id": f"msg_mock_{uuid.uuid4().hex[:24]}", "type": "message", "status": "completed",
               "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}
    return {
        "id": f"resp_mock_{uuid.uuid4().hex[:24]}", "object": "response", "created_at": int(time.time()),
        "status": "completed", "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": deployment.model_name, "output": [message], "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"), "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": {"format": {"type": "text"}},
        "tool_choice": "auto", "tools": [], "top_p": body.get("top_p", 1.0), "truncation": "disabled",
        "usage": {"input_tokens": used, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": made,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": used + made},
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


def response_events(response: dict[str, Any]) -> bytes:
    """The typed events streaming ``response`` (one message, one text part), ``response.completed`` last."""
    message = response["output"][0]
    text = message["content"][0]["text"]
    opened = {**response, "status": "in_progress", "output": [], "usage": None}
    part = {"type": "output_text", "text": "", "annotations": []}
    item = {"output_index": 0, "item_id": message["id"]}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": opened},
        {"type": "response.in_progress", "response": opened},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **item, "content_index": 0, "part": part},
        *({"type": "response.output_text.delta", **item, "content_index": 0, "delta": word}
          for word in _pieces(text)),
        {"type": "response.output_text.done", **item, "content_index": 0, "text": text},
        {"type": "response.content_part.done", **item, "content_index": 0, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": response},
    ]
    return b"".join(b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps({**event, "sequence_number": i}))
                    for i, event in enumerate(events))


def mock_text_completion(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """A legacy ``text_completion`` answering ``body`` with the mock text."""
    text = deployment.mock_response or ""
    used, made = _words(body.get("prompt") or ""), len(text.split())
    return {
        "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
        "model": deployment.model_name,
        "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": "stop"}
                    for i in range(int(body.get("n") or 1))],
        "usage": {"prompt_tokens": used, "completion_tokens": made, "total_tokens": used + made},
    }


def completion_events(completion: dict[str, Any]) -> bytes:
    """``text_completion`` chunks (text word by word, then the finish), then ``[DONE]``."""
    head = {k: v for k, v in completion.items() if k not in ("choices", "usage")}
    chunks = []
    for choice in completion["choices"]:
        for word in _pieces(choice["text"]):
            chunks.append({**head, "choices": [{**choice, "text": word, "finish_reason": None}]})
        chunks.append({**head, "choices": [{**choice, "text": ""}]})
    return b"".join(b"data: %s\n\n" % orjson.dumps(chunk) for chunk in chunks) + b"data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)] if text else []


class MockVerbatim:
    """The local "provider" of ``mock_response`` deployments for these two routes."""

    @staticmethod
    def _answer(deployment: Deployment, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return (mock_response if path == "/responses" else mock_text_completion)(deployment, body)

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        return Outcome(200, orjson.dumps(self._answer(deployment, path, body)))

    @asynccontextmanager
    async def open_stream(self, deployment: Deployment, path: str,
                          body: dict[str, Any]) -> AsyncIterator[StreamReply]:
        answer = self._answer(deployment, path, body)
        sse = response_events(answer) if path == "/responses" else completion_events(answer)

        async def chunks() -> AsyncIterator[bytes]:
            yield sse

        yield StreamReply(200, b"", chunks())


MOCK = MockVerbatim()
