"""What one server process allows its client connections, and the table of those it may close.

:class:`ConnectionLimits` is read from ``general_settings`` (``ConnectionSettings``) and
enforced by :class:`reprise.server.protocol.BoundedHttpToolsProtocol`; the
:class:`ConnectionTable` is how that protocol finds a connection to close when the process
is at ``max_connections`` or over its unsent-answer budget, without walking every connection.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reprise.config.models import ConnectionSettings

if TYPE_CHECKING:
    from reprise.server.protocol import BoundedHttpToolsProtocol


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds a :class:`BoundedHttpToolsProtocol` enforces (see ``ConnectionSettings``)."""

    max_header_bytes: int = 65536
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 512
    send_timeout: float = 30.0
    max_unsent_bytes: int = 256 * 2**20

    @classmethod
    def from_settings(cls, settings: ConnectionSettings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            head_timeout=settings.request_head_timeout,
            body_timeout=settings.request_body_timeout,
            max_connections=settings.max_connections or default_max_connections(),
            send_timeout=settings.response_send_timeout,
            max_unsent_bytes=int(settings.max_unsent_response_mb * 2**20),
        )


def default_max_connections() -> int:
    """Half this process's open-file limit: the other half is for upstream connections and stores."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(16, min(soft // 2, 65536))


class ConnectionTable:
    """One server process's connections that may be closed to make room, oldest first.

    Dicts keep insertion order, so the first key is the connection idle longest: moving a
    connection in or out costs one dict operation per request, finding a victim O(1).
    uvicorn pickles the protocol factory into each worker, and a table always unpickles
    empty, so every process has its own.
    """

    __slots__ = ("idle", "refused", "stalled")

    def __init__(self) -> None:
        self.idle: dict[BoundedHttpToolsProtocol, None] = {}  # kept alive between requests, or sending a head
        self.refused: dict[BoundedHttpToolsProtocol, None] = {}  # answered by us, draining before close
        self.stalled: dict[BoundedHttpToolsProtocol, None] = {}  # writes paused: the client is not reading

    def __reduce__(self) -> tuple[type[ConnectionTable], tuple[()]]:
        return ConnectionTable, ()

    def oldest(self) -> BoundedHttpToolsProtocol | None:
        for table in (self.refused, self.idle, self.stalled):
            for conn in table:
                return conn
        return None

    def unsent_bytes(self) -> int:
        """Answer bytes waiting for clients that do not read (stalled connections' send buffers)."""
        return sum(conn.transport.get_write_buffer_size() for conn in self.stalled)

    def forget(self, conn: BoundedHttpToolsProtocol) -> None:
        self.idle.pop(conn, None)
        self.refused.pop(conn, None)
        self.stalled.pop(conn, None)
