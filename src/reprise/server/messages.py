"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API in front of any provider.

Why a translation around the chat handler, not a handler of its own: the chat path
(:func:`reprise.server.chat.handle_chat` over the one driver) already does everything
a cached answer needs: keys, ``cache`` controls and ``Cache-Control``, single-flight,
storing a stream as it passes, replay, the cache headers. This module only translates:
the Anthropic body into the canonical chat body on the way in
(:mod:`reprise.core.messages_request`), and every answer of the route (a completion, its
SSE, a stored answer replayed, an error from the gateway or the provider) into
Anthropic's shape on the way out (:class:`AnthropicSend`, over
:mod:`reprise.core.messages_answer`). The cache status and key headers pass unchanged.

The Anthropic SDK's ``anthropic-version`` and ``anthropic-beta`` headers are accepted
and ignored: they select Anthropic API behaviour, which a non-Anthropic provider behind
the gateway does not have (an ``anthropic/`` deployment's adapter sends its own version,
for ``count_tokens`` too). The key is read from ``x-api-key`` as from ``Authorization``
(:func:`reprise.server.auth.presented_key`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from reprise.core.chat_answer import is_chat_completion
from reprise.core.chat_request import chat_facts
from reprise.core.messages_answer import MessageStream, error_of, message_of
from reprise.core.messages_request import chat_body, count_body, count_request, estimate_tokens
from reprise.errors import Unsupported
from reprise.providers.anthropic import AnthropicWire
from reprise.server.chat import ChatRequest, handle_chat
from reprise.server.gateway import Gateway
from reprise.server.http import JSON_TYPE, Message, Send, send_bytes
from reprise.server.routes import Call, JsonReader
from reprise.server.wires import AzureWire, OpenAIWire

#: Says that the ``count_tokens`` answer is the gateway's estimate, not a provider's count.
TOKEN_COUNT = (b"x-reprise-token-count", b"estimate")
_HEADERS_DROPPED_ON_REWRITE = frozenset({b"content-length"})


async def handle_messages(gw: Gateway, call: Call, read_json: JsonReader,
                          note: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Translate the Anthropic body, then answer it as ``/chat/completions`` would (``call.send`` reshapes)."""
    body = chat_body(await read_json(call.scope, call.receive))
    if note is not None:
        note(body)
    # No facts memo (its bytes are never read); Anthropic's stream always ends with the usage.
    request = ChatRequest(b"", chat_facts(body), body, reports_usage=True)
    await handle_chat(gw, call.scope, call.receive, call.send, request, call.caller, call.record)


async def handle_count_tokens(gw: Gateway, call: Call, read_json: JsonReader) -> None:
    """``{"input_tokens": N}``, never cached: Anthropic's own count, or the gateway's estimate.

    An ``anthropic/`` deployment is asked (its ``count_tokens`` endpoint, as LiteLLM passes it
    through) and its answer, status and body, is the route's. OpenAI's API has no
    token-counting endpoint, so for OpenAI-wire and mock deployments the count is estimated,
    and the header ``x-reprise-token-count: estimate`` says so. A deployment of another wire
    is refused (501) rather than guessed for.
    """
    body = count_request(await read_json(call.scope, call.receive))
    deployment = gw.pick(body["model"])  # 404 for a model the config does not name
    if deployment.mock_response is None and isinstance(deployment.wire, AnthropicWire):
        outcome = await gw.anthropic.count_tokens(deployment, body)
        await send_bytes(call.send, outcome.status, outcome.body, [JSON_TYPE, *outcome.headers])
        return
    if deployment.mock_response is None and not isinstance(deployment.wire, OpenAIWire | AzureWire):
        raise Unsupported(f"model {deployment.model_name!r}: count_tokens is estimated only for "
                          "OpenAI-compatible deployments", code="count_tokens_unsupported")
    answer = orjson.dumps({"input_tokens": estimate_tokens(count_body(body))})
    await send_bytes(call.send, 200, answer, [JSON_TYPE, TOKEN_COUNT])


def anthropic_answers(send: Send) -> Send:
    """``send`` for a Messages route: every answer it is given goes out in Anthropic's shape."""
    return AnthropicSend(send)


class AnthropicSend:
    """Reshapes one response as it is sent: JSON bodies (whole) and SSE streams (event by event).

    A 2xx ``text/event-stream`` is translated as it passes (:class:`MessageStream`), its
    ``content-length`` dropped (a replay is sent sized; the translation changes its size).
    Any other answer is held until complete (they are sent whole), then a 2xx chat
    completion becomes a ``message`` and an error Anthropic's error JSON, with the same
    status and headers.
    """

    __slots__ = ("send", "start", "parts", "stream")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.parts: list[bytes] = []
        self.stream: MessageStream | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = list(message.get("headers") or ())
            if self.start is None and self.stream is None:
                if message["status"] < 300 and _is_sse(headers):
                    self.stream = MessageStream()
                    message = {**message, "headers": _without_length(headers)}
                else:
                    self.start = {**message, "headers": headers}
                    return
        elif kind == "http.response.body":
            if self.stream is not None:
                await self._stream_body(self.stream, message)
                return
            if self.start is not None:
                await self._json_body(self.start, message)
                return
        await self.send(message)

    async def _stream_body(self, stream: MessageStream, message: Message) -> None:
        events = stream.feed(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if events or not more:
            await self.send({"type": "http.response.body", "body": events, "more_body": more})

    async def _json_body(self, start: Message, message: Message) -> None:
        self.parts.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        self.start = None
        status, body = start["status"], b"".join(self.parts)
        self.parts = []
        body = _message_json(body) if status < 300 else error_of(status, body)
        headers = [*_without_length(start["headers"]), (b"content-length", str(len(body)).encode())]
        await self.send({**start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def _message_json(raw: bytes) -> bytes:
    """A chat completion as a ``message``; any other 2xx body (``count_tokens``' own answer) as it is.

    The chat path sends a 2xx only for a chat completion (it turns anything else into a 502)."""
    try:
        completion = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    return orjson.dumps(message_of(completion)) if is_chat_completion(completion) else raw


def _is_sse(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-type" and value.startswith(b"text/event-stream") for name, value in headers)


def _without_length(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name not in _HEADERS_DROPPED_ON_REWRITE]
