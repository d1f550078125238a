"""``/ui``: the dashboard, a static HTML+JS+CSS bundle shipped inside the package.

The files under ``server/ui/`` are hand-written (SVG charts, no framework, no CDN),
so the dashboard works on an air-gapped gateway. They are public; every number
they show comes from the master-key-only admin API, called with the key the
operator types in (kept in ``sessionStorage``, sent as a Bearer header; no
cookies, so no CSRF surface). Files are read once, on first request.
"""

from __future__ import annotations

from importlib import resources

from reprise.errors import NotFoundError
from reprise.server.http import Send, send_bytes

UI_PATH = "/ui"
_TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
}
_SECURITY = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
     b" base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


def is_ui_path(path: str) -> bool:
    return path == UI_PATH or path.startswith(UI_PATH + "/")


class UiAssets:
    """The bundle's files by name, loaded lazily from the installed package."""

    def __init__(self, package: str = "reprise.server", folder: str = "ui") -> None:
        self._root = resources.files(package).joinpath(folder)
        self._files: dict[str, bytes] = {}

    def read(self, name: str) -> bytes | None:
        if name not in self._files:
            if "/" in name or name.startswith(".") or name.rpartition(".")[2] not in _TYPES:
                return None
            node = self._root.joinpath(name)
            if not node.is_file():
                return None
            self._files[name] = node.read_bytes()
        return self._files[name]

    async def serve(self, send: Send, method: str, path: str) -> None:
        if method != "GET":
            raise NotFoundError(f"no route {method} {path}", code="not_found")
        if path == UI_PATH:  # relative asset URLs need the trailing slash
            await send_bytes(send, 308, b"", [(b"location", b"ui/")])
            return
        name = path[len(UI_PATH) + 1:] or "index.html"
        data = self.read(name)
        if data is None:
            raise NotFoundError(f"no dashboard file {name!r}", code="not_found")
        kind = _TYPES[name.rpartition(".")[2]]
        await send_bytes(send, 200, data, [(b"content-type", kind), *_SECURITY])
