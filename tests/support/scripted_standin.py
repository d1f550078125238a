"""A stand-in chat provider that sends what a test scripted, byte for byte.

``POST /v1/chat/completions`` answers by the body's ``model``: a streamed request gets the
model's scripted SSE events (each written on its own), a plain one its scripted JSON. A test
scripts a model of its own (:meth:`ScriptedStandIn.script`), so tests sharing the stand-in
never see each other's answers. What was asked is kept in :attr:`ScriptedStandIn.requests`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.support.threaded_server import ThreadedServer


def sse(data: dict[str, Any] | str) -> bytes:
    """One ``data:`` event; a string is sent as it is (``[DONE]``)."""
    return b"data: " + (data if isinstance(data, str) else json.dumps(data)).encode() + b"\n\n"


class ScriptedStandIn(ThreadedServer):
    url_path = "/v1"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self._events: dict[str, list[bytes]] = {}
        self._json: dict[str, dict[str, Any]] = {}
        self._delay: dict[str, float] = {}

    def script(self, model: str, events: list[bytes] | None = None, answer: dict[str, Any] | None = None,
               delay: float = 0.0) -> None:
        """What ``model`` answers: ``events`` to a streamed request, ``answer`` to a plain one, each
        after ``delay`` seconds (so that identical requests sent together are in flight together)."""
        self._delay[model] = delay
        if events is not None:
            self._events[model] = events
        if answer is not None:
            self._json[model] = answer

    def calls(self, model: str) -> int:
        return sum(1 for body in self.requests if body.get("model") == model)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            self.rejected.append(request.path)
            return web.json_response({"error": {"message": "not found"}}, status=404)
        body = json.loads(await request.read())
        self.requests.append(body)
        model = body.get("model")
        await asyncio.sleep(self._delay.get(model, 0.0))
        if not body.get("stream"):
            if model not in self._json:
                return web.json_response({"error": {"message": f"no answer scripted for {model}"}}, status=404)
            return web.json_response(self._json[model])
        if model not in self._events:
            return web.json_response({"error": {"message": f"no stream scripted for {model}"}}, status=404)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in self._events[model]:
            await response.write(event)
        await response.write_eof()
        return response


def scripted_config(standin: ScriptedStandIn, master_key: str) -> dict[str, Any]:
    """A gateway config sending every model to the stand-in, with a ``local`` cache."""
    return {
        "model_list": [{"model_name": "*", "litellm_params": {"model": "openai/*", "api_base": standin.url,
                                                              "api_key": "sk-upstream", "timeout": 5}}],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "ttl": 600}},
    }
