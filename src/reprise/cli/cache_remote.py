"""A tiny client for a running gateway's admin API, used by ``reprise cache --url``.

It uses aiohttp (already a dependency for upstream calls). Error answers, which
are OpenAI error JSON, become a :class:`~reprise.errors.RepriseError` carrying the
server's message, so the CLI prints one line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from reprise.errors import RepriseError


class AdminClient:
    """``async with AdminClient(url, key) as c: await c.get("/cache/stats")``."""

    def __init__(self, url: str, key: str | None, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str, query: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None, missing_ok: bool = False) -> Any:
        assert self._session is not None, "use AdminClient in 'async with'"
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self._session.request(method, self.url + path, params=query, data=data,
                                             headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RepriseError(f"cannot reach {self.url}: {exc.__class__.__name__}: {exc}") from exc
        if status == 404 and missing_ok:
            return None
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if status >= 400:
            message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
            raise RepriseError(f"{method} {path} answered {status}: {message or raw[:200]!r}")
        return payload

    async def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return await self._call("GET", path, query)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        return await self._call("POST", path, body=body)

    async def get_entry(self, key: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self._call("GET", "/cache/entries/" + quote(key, safe=":/"),
                                                         missing_ok=True)
        return result
