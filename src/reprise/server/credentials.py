"""Bearer tokens for providers that do not take a fixed key: Vertex AI and Azure Entra ID.

Both hand out access tokens that expire (about an hour). A :class:`RefreshingToken`
fetches one on the first call that needs it (never at start: no I/O in constructors,
and ``reprise config check`` must not reach Google or Microsoft), keeps it, and fetches
the next one *before* the old one expires, so no request is sent with a token about to
lapse. Concurrent requests wait for one fetch rather than each starting their own.

Google's library is synchronous (``google.auth`` blocks on HTTP), so its refresh runs
in a worker thread; ``azure-identity``'s ``aio`` credentials are awaited directly.
Either way the event loop is never blocked. A failed fetch is an :class:`UpstreamError`
(502) naming the model, never the credentials or the token endpoint.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reprise.errors import UpstreamError

log = logging.getLogger("reprise.upstream")

GOOGLE_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
"""The scope LiteLLM (and Azure OpenAI's docs) ask Entra ID for."""

REFRESH_MARGIN = 300.0
"""Seconds before expiry a token is replaced (less for tokens that live under ten minutes)."""

Fetch = Callable[[], Awaitable[tuple[str, float]]]
"""Gets a new token: ``(token, expires_at)`` with ``expires_at`` in seconds since the epoch."""


class TokenSource(Protocol):
    async def token(self) -> str:
        """A token valid for a while yet; :class:`UpstreamError` if none can be had."""
        ...


@dataclass(frozen=True, slots=True)
class StaticToken:
    """A token given in the config (``azure_ad_token`` / ``AZURE_AD_TOKEN``): sent as it is."""

    value: str

    async def token(self) -> str:
        return self.value


class RefreshingToken:
    """A token fetched when first needed and again before it expires; one fetch at a time."""

    def __init__(self, fetch: Fetch, what: str, clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._what = what
        self._clock = clock
        self._value: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._value is not None and self._clock() < self._refresh_at:
            return self._value
        async with self._lock:
            if self._value is not None and self._clock() < self._refresh_at:
                return self._value  # another request fetched it while this one waited
            try:
                value, expires_at = await self._fetch()
            except Exception as exc:
                log.warning("%s: could not get an access token (%s: %s)", self._what, exc.__class__.__name__, exc)
                raise UpstreamError(f"{self._what}: could not get an access token "
                                    f"({exc.__class__.__name__})") from exc
            now = self._clock()
            lifetime = max(expires_at - now, 0.0)
            self._value, self._refresh_at = value, now + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            return value


# --- Google (Vertex AI) -------------------------------------------------------------------------


def read_google_credentials(value: str | dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's ``vertex_credentials``: a service-account (or other) JSON, or a path to one.

    ValueError saying what is wrong; the caller names the key."""
    if isinstance(value, dict):
        return value
    text = value.strip()
    if not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"is neither JSON nor the path of a file ({text[:80]!r} not found)")
        text = path.read_text()
    try:
        info = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not valid JSON ({exc})") from None
    if not isinstance(info, dict) or "type" not in info:
        raise ValueError("is not a Google credentials JSON (no \"type\" field)")
    return info


def google_tokens(info: dict[str, Any] | None, what: str) -> RefreshingToken:
    """Tokens for Vertex AI from ``info`` (a credentials JSON), else Application Default Credentials."""
    held: list[Any] = []  # the credentials object, built on the first fetch (in the worker thread)

    def refresh() -> tuple[str, float]:
        import google.auth
        import google.auth.transport.requests

        if not held:
            if info is None:
                credentials, _ = google.auth.default(scopes=[GOOGLE_SCOPE])
            else:
                credentials, _ = google.auth.load_credentials_from_dict(  # type: ignore[no-untyped-call]
                    info, scopes=[GOOGLE_SCOPE])
            held.append(credentials)
        credentials = held[0]
        credentials.refresh(google.auth.transport.requests.Request())
        expiry = credentials.expiry  # naive UTC, as google-auth keeps it
        expires_at = calendar.timegm(expiry.utctimetuple()) if expiry is not None else time.time() + 3600
        return str(credentials.token), float(expires_at)

    async def fetch() -> tuple[str, float]:
        return await asyncio.to_thread(refresh)

    return RefreshingToken(fetch, what)


# --- Azure Entra ID -----------------------------------------------------------------------------


def azure_tokens(tenant_id: str | None, client_id: str | None, client_secret: str | None,
                 what: str) -> RefreshingToken:
    """Entra ID tokens for Azure OpenAI, as LiteLLM picks the credential: a client secret when
    tenant, client id and secret are all given, else ``DefaultAzureCredential`` (environment,
    workload identity, managed identity, Azure CLI...)."""

    async def fetch() -> tuple[str, float]:
        from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

        credential: ClientSecretCredential | DefaultAzureCredential
        if tenant_id and client_id and client_secret:
            credential = ClientSecretCredential(tenant_id, client_id, client_secret)
        else:
            credential = DefaultAzureCredential()
        async with credential:  # a fresh credential per fetch: nothing to close at shutdown
            access = await credential.get_token(AZURE_SCOPE)
        return access.token, float(access.expires_on)

    return RefreshingToken(fetch, what)
