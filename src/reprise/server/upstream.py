"""Calls to the model provider: any OpenAI-compatible HTTP API, or a configured mock.

One pooled aiohttp session per process (connection reuse is most of the miss
overhead). Network failures and timeouts become :class:`UpstreamError` (502/504);
an HTTP error from the provider is *returned* as an :class:`Outcome` with its own
status and body, so the client sees the provider's error and the driver does not
store it (only 2xx outcomes are stored).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from reprise.cache import Outcome
from reprise.core.streaming import render_sse
from reprise.errors import UpstreamError

#: Default API bases of providers LiteLLM names by prefix; all speak OpenAI's API.
PROVIDER_BASES: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "together_ai": "https://api.together.xyz/v1",
    "fireworks_ai": "https://api.fireworks.ai/inference/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "ollama": "http://localhost:11434/v1",
    "ollama_chat": "http://localhost:11434/v1",
}

#: Body fields that are for the gateway, never sent to the provider.
GATEWAY_ONLY_FIELDS = ("cache", "metadata", "caching", "mock_response", "num_retries")


@dataclass(frozen=True, slots=True)
class Deployment:
    """One ``model_list`` entry, resolved to what a call needs."""

    model_name: str
    upstream_model: str
    api_base: str
    api_key: str | None
    timeout: float
    stream_timeout: float
    mock_response: str | None = None


def upstream_body(body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in GATEWAY_ONLY_FIELDS}
    out["model"] = deployment.upstream_model
    return out


@dataclass(slots=True)
class StreamReply:
    """An opened upstream stream: an error (status, body) or a byte iterator."""

    status: int
    error_body: bytes
    chunks: AsyncIterator[bytes]


class HttpUpstream:
    """OpenAI-compatible provider over HTTP with a shared connection pool."""

    def __init__(self, pool_size: int = 512) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    @staticmethod
    def _headers(deployment: Deployment) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if deployment.api_key:
            headers["Authorization"] = f"Bearer {deployment.api_key}"
        return headers

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        url = deployment.api_base.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)
        try:
            async with self._client().post(
                url, data=orjson.dumps(body), headers=self._headers(deployment), timeout=timeout
            ) as resp:
                return Outcome(resp.status, await resp.read())
        except TimeoutError as exc:
            raise UpstreamError(f"upstream {url} timed out after {deployment.timeout}s", 504) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {url} failed: {exc.__class__.__name__}: {exc}") from exc

    @asynccontextmanager
    async def open_stream(
        self, deployment: Deployment, path: str, body: dict[str, Any]
    ) -> AsyncIterator[StreamReply]:
        url = deployment.api_base.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=deployment.timeout, sock_read=deployment.stream_timeout
        )
        try:
            async with self._client().post(
                url, data=orjson.dumps(body), headers=self._headers(deployment), timeout=timeout
            ) as resp:
                if resp.status >= 300:
                    yield StreamReply(resp.status, await resp.read(), _no_chunks())
                else:
                    yield StreamReply(resp.status, b"", _read_chunks(resp, url))
        except TimeoutError as exc:
            raise UpstreamError(f"upstream {url} timed out", 504) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream {url} failed: {exc.__class__.__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


async def _read_chunks(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for piece in resp.content.iter_any():
            yield piece
    except TimeoutError as exc:
        raise UpstreamError(f"upstream {url} stream stalled", 504) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"upstream {url} stream broke: {exc.__class__.__name__}") from exc


class MockUpstream:
    """Answers ``mock_response`` deployments locally, as LiteLLM's ``mock_response`` does."""

    _counter = itertools.count(1)

    def completion(self, deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        text = deployment.mock_response or ""
        prompt_words = sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages", ())
        )
        completion_words = len(text.split())
        return {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": deployment.model_name,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for i in range(int(body.get("n") or 1))
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        await asyncio.sleep(0)
        if path == "/embeddings":
            return Outcome(200, orjson.dumps(mock_embeddings(deployment, body)))
        return Outcome(200, orjson.dumps(self.completion(deployment, body)))

    @asynccontextmanager
    async def open_stream(
        self, deployment: Deployment, path: str, body: dict[str, Any]
    ) -> AsyncIterator[StreamReply]:
        sse = render_sse(self.completion(deployment, body), include_usage=True)

        async def chunks() -> AsyncIterator[bytes]:
            yield sse

        yield StreamReply(200, b"", chunks())

    async def aclose(self) -> None:
        return None


def mock_embeddings(deployment: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    """Deterministic 8-dimensional vectors, so mock embeddings are stable across runs."""
    import hashlib

    raw = body.get("input")
    items = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw or []
    data = []
    for i, item in enumerate(items):
        digest = hashlib.sha256(orjson.dumps(item)).digest()
        data.append(
            {"object": "embedding", "index": i, "embedding": [b / 255.0 for b in digest[:8]]}
        )
    return {
        "object": "list",
        "data": data,
        "model": deployment.model_name,
        "usage": {"prompt_tokens": len(items), "total_tokens": len(items)},
    }
