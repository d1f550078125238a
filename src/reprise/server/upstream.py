"""Calls to the model provider: any OpenAI-compatible HTTP API, or a configured mock.

One pooled aiohttp session per process (connection reuse is most of the miss
overhead). Network failures and timeouts become :class:`UpstreamError` (502/504)
whose message names the model and the failure, never the provider's URL or
credentials (they reach the log only, with any ``user:password@`` removed); an HTTP
error from the provider is *returned* as an :class:`Outcome` with its own status and
body, so the client sees the provider's error and the driver does not store it.

The provider receives :func:`~reprise.core.keys.provider_params` of the request: what
the key covers, plus framing. For a streamed answer the gateway will store, it asks for
``stream_options.include_usage`` (to keep the answer's usage); a deployment that refuses
that option with a 400/422 whose error names it is asked again once without it, and
remembered for that upstream model.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from reprise.core.answer_bounds import MAX_ANSWER_BYTES, TOO_LARGE_CODE, too_large_message
from reprise.core.keys import provider_params
from reprise.core.request import asks_usage
from reprise.core.sse_replay import render_sse
from reprise.errors import UpstreamError
from reprise.outcome import Outcome
from reprise.server.credentials import TokenSource
from reprise.server.headers import provider_headers
from reprise.server.wires import OPENAI, Wire
from reprise.stream_lead import StreamReply

log = logging.getLogger("reprise.upstream")

#: Concurrent provider calls per deployment unless ``max_parallel_requests`` says otherwise:
#: a quarter of the shared connection pool, so no one deployment can take it all.
DEFAULT_MAX_PARALLEL = 128

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
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "text-completion-openai": "https://api.openai.com/v1",
    "xai": "https://api.x.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "cerebras": "https://api.cerebras.ai/v1",
    "sambanova": "https://api.sambanova.ai/v1",
    "nvidia_nim": "https://integrate.api.nvidia.com/v1",
}


class Upstream(Protocol):
    """A way to call a deployment's provider: over HTTP, or answered locally (mock)."""

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        """The provider's whole answer to ``body`` (already in the provider's form)."""
        ...

    def open_chat_stream(self, deployment: Deployment, path: str, body: dict[str, Any],
                         record_usage: bool) -> AbstractAsyncContextManager[StreamReply]:
        """The provider's streamed answer to the client's ``body``."""
        ...


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
    basic_auth: str | None = None
    """``user:password`` from the api_base's URL, sent as HTTP Basic auth when there is no api_key."""
    max_parallel: int = 128
    """Provider calls in flight at once for this deployment (streams count until they end)."""
    queue_timeout: float = 10.0
    """The longest a call waits for one of those slots before failing as 503 ``upstream_busy``."""
    wire: Wire = OPENAI
    """How the provider is addressed (URL, credentials): OpenAI's way, or Azure's (server/wires.py)."""
    tokens: TokenSource | None = field(default=None, compare=False)
    """A bearer token fetched per call (Vertex AI, Azure Entra ID), sent instead of ``api_key``."""
    sdk_params: dict[str, Any] | None = field(default=None, compare=False)
    """For a provider reached through the LiteLLM SDK: the entry's litellm_params (model with its
    prefix, api_base, provider-specific keys), passed to ``litellm.acompletion``."""
    extra_headers: tuple[tuple[str, str], ...] = ()
    """Sent with every call: ``extra_headers`` and ``organization`` (as ``OpenAI-Organization``)
    of the entry, as LiteLLM sends them (who is billed, whose data-retention terms apply)."""
    entry: str | None = None
    """For a wildcard entry's deployment (one per model name a client asks for): the entry it
    comes from. Its connection slots are the entry's, so clients choosing names cannot grow that
    table (a remembered ``stream_options`` refusal is the entry's and the upstream model's)."""

    @property
    def pool(self) -> Deployment | str:
        """What the connection slots are kept by (with the upstream model: remembered refusals)."""
        return self.entry if self.entry is not None else self


def upstream_body(body: dict[str, Any], deployment: Deployment) -> dict[str, Any]:
    """The body sent to ``deployment``: the provider's params, with its own model name."""
    out = provider_params(body)
    out["model"] = deployment.upstream_model
    return out


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without its ``user:password@`` part, and that part (percent-decoded), if any.

    The credentials are then sent as a header, never as part of a URL that could be
    logged or shown (and aiohttp refuses a URL with credentials beside an Authorization header).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=host)), unquote(userinfo)


def _where(url: str) -> str:
    """``url`` for the log, without credentials."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url.rpartition("@")[2]


def _unreachable(deployment: Deployment, url: str, exc: BaseException, what: str) -> UpstreamError:
    log.warning("model %r: %s at %s (%s: %s)", deployment.model_name, what, _where(url),
                exc.__class__.__name__, str(exc).replace(url, _where(url)))
    return UpstreamError(f"model {deployment.model_name!r}: {what} ({exc.__class__.__name__})")


def _timed_out(deployment: Deployment, seconds: float | None, what: str) -> UpstreamError:
    limit = f" after {seconds:g}s" if seconds else ""
    return UpstreamError(f"model {deployment.model_name!r}: the provider timed out{limit} {what}", 504)


class CallSlots:
    """Each deployment's ``max_parallel`` provider-call slots, waited for at most ``queue_timeout``.

    Fairness between deployments: one model's (or one tenant's) open streams hold only
    their own deployment's slots, never the whole pool. One table per upstream; keyed by
    :attr:`Deployment.pool`, so clients choosing wildcard names cannot grow it."""

    def __init__(self) -> None:
        self._slots: dict[Deployment | str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, deployment: Deployment) -> AsyncIterator[None]:
        slots = self._slots.get(deployment.pool)
        if slots is None:
            slots = self._slots[deployment.pool] = asyncio.Semaphore(deployment.max_parallel)
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), deployment.queue_timeout)
            except TimeoutError:
                raise UpstreamError(
                    f"model {deployment.model_name!r}: all {deployment.max_parallel} provider connections "
                    f"stayed busy for {deployment.queue_timeout:g}s; try again", 503) from None
        else:
            await slots.acquire()
        try:
            yield
        finally:
            slots.release()


class HttpUpstream:
    """OpenAI-compatible provider over HTTP with a shared connection pool."""

    def __init__(self, pool_size: int = 512) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._refuse_usage: set[tuple[Deployment | str, str]] = set()
        """(pool, upstream model) pairs whose provider refused ``stream_options`` by name (400/422),
        then answered without it: not asked for it again. Per upstream model, not per pool, so
        one model behind a wildcard entry refusing it does not cost the others their usage; a
        wildcard entry's table still grows only with the names its provider actually answered."""
        self._slot = CallSlots().slot

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    @staticmethod
    async def _headers(deployment: Deployment) -> dict[str, str]:
        headers = deployment.wire.headers(deployment)
        if deployment.extra_headers:  # never in place of the credentials or content type, in any spelling
            own = {name.lower() for name in headers} | ({"authorization"} if deployment.tokens else set())
            headers = {**{n: v for n, v in deployment.extra_headers if n.lower() not in own}, **headers}
        if deployment.tokens is not None:
            headers["Authorization"] = f"Bearer {await deployment.tokens.token()}"
        return headers

    async def post(self, deployment: Deployment, path: str, body: dict[str, Any]) -> Outcome:
        url = deployment.wire.url(deployment, path)
        timeout = aiohttp.ClientTimeout(total=deployment.timeout)
        headers = await self._headers(deployment)
        try:
            async with self._slot(deployment), self._client().post(
                url, data=orjson.dumps(body), headers=headers, timeout=timeout
            ) as resp:
                answer = await _read_whole(resp, deployment)
                return Outcome(resp.status, answer, headers=provider_headers(resp.headers.items()))
        except TimeoutError as exc:
            raise _timed_out(deployment, deployment.timeout, "before answering") from exc
        except aiohttp.ClientError as exc:
            raise _unreachable(deployment, url, exc, "the provider could not be reached") from exc

    @asynccontextmanager
    async def open_chat_stream(self, deployment: Deployment, path: str, body: dict[str, Any],
                               record_usage: bool) -> AsyncIterator[StreamReply]:
        """Open a streamed chat answer; with ``record_usage``, ask for the usage chunk if allowed."""
        request = upstream_body(body, deployment)
        refusal = (deployment.pool, deployment.upstream_model)
        ask = record_usage and refusal not in self._refuse_usage and not _sets_include_usage(body)
        if ask:
            request["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
        async with self.open_stream(deployment, path, request) as reply:
            if not (ask and reply.status in (400, 422) and _names_stream_options(reply.error_body)):
                yield reply
                return
        del request["stream_options"]  # refused: once more without it, as the client asked
        if isinstance(body.get("stream_options"), dict):
            request["stream_options"] = body["stream_options"]
        async with self.open_stream(deployment, path, request) as reply:
            if reply.status < 300:
                self._refuse_usage.add(refusal)
                log.warning("model %r refuses stream_options.include_usage; not asked again", deployment.model_name)
            yield reply

    @asynccontextmanager
    async def open_stream(
        self, deployment: Deployment, path: str, body: dict[str, Any]
    ) -> AsyncIterator[StreamReply]:
        url = deployment.wire.url(deployment, path)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=deployment.timeout, sock_read=deployment.stream_timeout
        )
        headers = await self._headers(deployment)
        try:
            async with self._slot(deployment), self._client().post(
                url, data=orjson.dumps(body), headers=headers, timeout=timeout
            ) as resp:
                passed_on = provider_headers(resp.headers.items())
                if resp.status >= 300:
                    yield StreamReply(resp.status, await _read_whole(resp, deployment), _no_chunks(), passed_on)
                elif not resp.content_type.startswith("text/event-stream"):
                    log.warning("model %r answered a stream with %s, not text/event-stream",
                                deployment.model_name, resp.content_type)
                    yield StreamReply(502, _not_a_stream(deployment), _no_chunks())
                else:
                    yield StreamReply(resp.status, b"", _read_chunks(resp, deployment), passed_on)
        except TimeoutError as exc:
            raise _timed_out(deployment, deployment.timeout, "before the stream began") from exc
        except aiohttp.ClientError as exc:
            raise _unreachable(deployment, url, exc, "the provider could not be reached") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def _sets_include_usage(body: dict[str, Any]) -> bool:
    """The client chose ``include_usage`` itself (true or false): its choice is forwarded as it is."""
    options = body.get("stream_options")
    return isinstance(options, dict) and "include_usage" in options


def _names_stream_options(error_body: bytes) -> bool:
    """A 400/422 is taken for a refusal of the gateway's ``stream_options`` only when it says so:
    any other error (context length, a bad parameter, a provider hiccup) is the client's answer
    as it is, neither retried (a second paid call) nor remembered (usage lost for good)."""
    text = error_body.lower()
    return b"stream_options" in text or b"include_usage" in text


def _not_a_stream(deployment: Deployment) -> bytes:
    message = f"model {deployment.model_name!r}: the provider did not answer with an event stream"
    return orjson.dumps({"error": {"message": message, "type": "upstream_error", "param": None,
                                   "code": "upstream_error"}})


async def _read_whole(resp: aiohttp.ClientResponse, deployment: Deployment) -> bytes:
    """The provider's whole answer (decompressed), at most :data:`MAX_ANSWER_BYTES`; past it a
    502 naming the limit, read no further (``resp.read()`` would hold any size)."""
    declared = resp.content_length
    if declared is not None and declared > MAX_ANSWER_BYTES:
        raise _too_large(deployment, f"declared {declared} bytes")
    parts: list[bytes] = []
    size = 0
    async for piece in resp.content.iter_any():
        size += len(piece)
        if size > MAX_ANSWER_BYTES:
            raise _too_large(deployment, f"more than {MAX_ANSWER_BYTES} bytes read")
        parts.append(piece)
    return b"".join(parts)  # one copy (a bytearray grown and then copied out made two)


def _too_large(deployment: Deployment, seen: str) -> UpstreamError:
    log.warning("model %r: the provider's answer is over the %d-byte limit (%s); not read further",
                deployment.model_name, MAX_ANSWER_BYTES, seen)
    return UpstreamError(too_large_message(deployment.model_name), code=TOO_LARGE_CODE)


async def _read_chunks(resp: aiohttp.ClientResponse, deployment: Deployment) -> AsyncIterator[bytes]:
    try:
        async for piece in resp.content.iter_any():
            yield piece
    except TimeoutError as exc:
        raise _timed_out(deployment, deployment.stream_timeout, "in the middle of the stream") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(
            f"model {deployment.model_name!r}: the provider's stream broke ({exc.__class__.__name__})"
        ) from exc


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
        sse = render_sse(self.completion(deployment, body), include_usage=asks_usage(body))

        async def chunks() -> AsyncIterator[bytes]:
            yield sse

        yield StreamReply(200, b"", chunks())

    @asynccontextmanager
    async def open_chat_stream(self, deployment: Deployment, path: str, body: dict[str, Any],
                               record_usage: bool) -> AsyncIterator[StreamReply]:
        request = upstream_body(body, deployment)
        if record_usage and not _sets_include_usage(body):  # as HttpUpstream: the client's choice stands
            request["stream_options"] = {**(request.get("stream_options") or {}), "include_usage": True}
        async with self.open_stream(deployment, path, request) as reply:
            yield reply

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
