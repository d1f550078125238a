"""``anthropic/<model>`` deployments: OpenAI's chat form in and out, Anthropic's Messages API between.

:class:`AnthropicUpstream` is an :class:`~reprise.server.upstream.Upstream` like the
others: the driver hands it the canonical OpenAI body and gets back a ``chat.completion``
(or its SSE), so the cache, single-flight, stream storage and replay stay
provider-agnostic. It calls through the process's :class:`HttpUpstream` (its pooled
session, per-deployment slots, timeouts and error handling) with :class:`AnthropicWire`
addressing ``POST {api_base}/v1/messages`` with ``x-api-key`` and ``anthropic-version``.
The translation itself is pure (:mod:`reprise.core.anthropic_request`,
:mod:`reprise.core.anthropic_response`).

A request Anthropic cannot take (an OpenAI-only parameter, ``n > 1``, embeddings) is
answered 400 without calling the provider; a provider error keeps its status and is
rewritten as OpenAI error JSON; neither is stored (the driver stores only 2xx), nor is an
answer whose stop reason does not end it whole (``pause_turn``, an unknown one: no ``finish_reason``), nor
one holding what the translation has no place for (``anthropic_untranslated``: a ``thinking`` block,
a delta type added later...). A stream
that sends ``error`` or ends before ``message_stop`` raises :class:`UpstreamError`
mid-stream: the client gets an error event and nothing is stored.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from reprise.config.environ import env_value
from reprise.core.anthropic_request import DEFAULT_MAX_TOKENS, messages_request
from reprise.core.anthropic_response import StreamTranslator, chat_completion, is_whole, openai_error
from reprise.core.request import asks_usage
from reprise.errors import RequestError, UpstreamError
from reprise.outcome import Outcome
from reprise.server.errors import error_body
from reprise.server.upstream import Deployment, HttpUpstream, upstream_body
from reprise.stream_lead import StreamReply

API_BASE = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


def messages_url(api_base: str | None) -> str:
    """Where the Messages API is, as LiteLLM resolves it: ``api_base``, else ``ANTHROPIC_API_BASE``
    or ``ANTHROPIC_BASE_URL``, else Anthropic's; ``/v1/messages`` appended unless already there."""
    base = (api_base or env_value("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL") or API_BASE).rstrip("/")
    return base if base.endswith(MESSAGES) else base + MESSAGES


def api_key_of(configured: str | None) -> str | None:
    """The deployment's ``api_key``, else ``ANTHROPIC_API_KEY`` (LiteLLM's order)."""
    return configured or env_value("ANTHROPIC_API_KEY")


@dataclass(frozen=True, slots=True)
class AnthropicWire:
    """Anthropic's addressing: the deployment's ``api_base`` is the whole Messages URL
    (:func:`messages_url`), ``count_tokens`` beside it; the key goes in ``x-api-key``, the API
    version in a header."""

    def url(self, deployment: Deployment, path: str) -> str:
        return deployment.api_base + "/count_tokens" if path == COUNT_TOKENS else deployment.api_base

    def headers(self, deployment: Deployment) -> dict[str, str]:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if deployment.api_key:
            headers["x-api-key"] = deployment.api_key
        return headers


ANTHROPIC = AnthropicWire()


def _refusal(exc: RequestError) -> bytes:
    return error_body(exc.message, "invalid_request_error", exc.param, exc.code)


class AnthropicUpstream:
    """Chat completions through Anthropic's Messages API, over the shared :class:`HttpUpstream`."""

    def __init__(self, http: HttpUpstream, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self._http = http
        self._max_tokens = max_tokens

    def _request(self, deployment: Deployment, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path != "/chat/completions":
            raise RequestError(f"model {deployment.model_name!r} is an Anthropic model, and Anthropic "
                               "has no embeddings API; use an embedding model", param="model",
                               code="unsupported_endpoint")
        return messages_request(body, deployment.upstream_model, self._max_tokens)

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        """Anthropic's whole answer to the OpenAI ``body``, as a ``chat.completion`` (or OpenAI error JSON)."""
        try:
            request = self._request(deployment, path, body)
        except RequestError as exc:
            return Outcome(400, _refusal(exc))
        outcome = await self._http.post(deployment, MESSAGES, request)
        if not outcome.ok:
            return Outcome(outcome.status, openai_error(outcome.body, outcome.status), headers=outcome.headers)
        try:
            message = orjson.loads(outcome.body)
        except orjson.JSONDecodeError:
            message = None
        completion = chat_completion(message, int(time.time())) if isinstance(message, dict) else None
        if completion is None:
            raise UpstreamError(f"model {deployment.model_name!r}: the provider's answer is not a Messages response")
        return Outcome(outcome.status, orjson.dumps(completion), headers=outcome.headers,
                       storable=is_whole(completion))

    async def count_tokens(self, deployment: Deployment, body: dict[str, Any]) -> Outcome:
        """Anthropic's own count for the Anthropic ``count_tokens`` body (checked by the route, without
        gateway-only fields), with the deployment's model name: its answer as sent, status and body.

        Never cached: a count is cheap and free at Anthropic, and the route's answer is exactly its."""
        return await self._http.post(deployment, COUNT_TOKENS, {**body, "model": deployment.upstream_model})

    @asynccontextmanager
    async def open_chat_stream(self, deployment: Deployment, path: str, body: dict[str, Any],
                               record_usage: bool) -> AsyncIterator[StreamReply]:
        """Anthropic's event stream as OpenAI chunks. Anthropic always reports usage, so the usage
        chunk is written when the client asked for it, or when the gateway will store the answer
        and the client did not decline it (as :meth:`HttpUpstream.open_chat_stream` asks)."""
        options = body.get("stream_options")
        declined = isinstance(options, dict) and options.get("include_usage") is False
        translator = StreamTranslator(int(time.time()), asks_usage(body) or (record_usage and not declined))
        try:
            request = self._request(deployment, path, upstream_body(body, deployment))
        except RequestError as exc:
            yield StreamReply(400, _refusal(exc), _nothing())
            return
        async with self._http.open_stream(deployment, MESSAGES, request) as reply:
            if reply.status >= 300:
                yield StreamReply(reply.status, openai_error(reply.error_body, reply.status), reply.chunks,
                                  reply.headers)
            else:
                yield StreamReply(reply.status, b"", _translated(deployment, reply.chunks, translator),
                                  reply.headers, storable=lambda: not translator.untranslated)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


async def _translated(deployment: Deployment, chunks: AsyncIterator[bytes],
                      translator: StreamTranslator) -> AsyncIterator[bytes]:
    """The OpenAI SSE of Anthropic's ``chunks``; a failed or unfinished stream raises at its end."""
    async for piece in chunks:
        out = translator.feed(piece)
        if out:
            yield out
        if translator.failure is not None or translator.finished:
            break
    if translator.failure is not None:
        raise UpstreamError(f"model {deployment.model_name!r}: {translator.failure}")
    if not translator.finished:
        raise UpstreamError(f"model {deployment.model_name!r}: the provider's stream ended before message_stop")
