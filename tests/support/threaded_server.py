"""The lifecycle the test stand-ins share: an aiohttp app on its own event loop in a daemon
thread, started by ``with`` on a free loopback port and stopped on leaving it.

A stand-in subclasses :class:`ThreadedServer`, calls ``super().__init__()`` and implements
:meth:`_handle`, which answers every method and path; refusals go in :attr:`rejected`.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Self

from aiohttp import web


class ThreadedServer:
    scheme = "http"
    """``https`` where :meth:`_ssl_context` gives a context."""
    url_path = ""
    """What :attr:`url` ends with (e.g. ``/v1``)."""

    def __init__(self) -> None:
        self.rejected: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.url_path}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        """A server-side TLS context to serve HTTPS with; None serves plain HTTP."""
        return None

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError
