"""A sized answer leaves in one socket write; everything else as uvicorn writes it.

Found by sampling a gateway under load: the head's write and the body's write took 29% of
its time; one write per answer halves the syscalls of a cache hit (server/one_write.py).
The cycle is driven here with a transport that records its writes (asyncio's interface,
not our code).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl

from reprise.server.one_write import OneWriteCycle


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:  # one write of several buffers (uvloop: one writev)
        self.writes.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def cycle(method: str = "POST", keep_alive: bool = True) -> tuple[OneWriteCycle, RecordingTransport, list[int]]:
    transport = RecordingTransport()
    done: list[int] = []
    made = OneWriteCycle(
        scope={"method": method}, transport=transport, flow=FlowControl(transport), logger=logging.getLogger("t"),
        access_logger=logging.getLogger("t"), access_log=False, default_headers=[(b"date", b"today")],
        message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
        on_response=lambda: done.append(1),
    )
    return made, transport, done


async def test_a_sized_answer_is_one_write() -> None:
    c, transport, done = cycle()
    await c.send({"type": "http.response.start", "status": 200,
                  "headers": [(b"content-type", b"application/json"), (b"Content-Length", b"2")]})
    assert transport.writes == []
    await c.send({"type": "http.response.body", "body": b"{}"})
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ndate: today\r\ncontent-type: application/json\r\n"
                                b"content-length: 2\r\n\r\n{}"]
    assert c.response_complete and done == [1] and not transport.closed


async def test_a_large_answer_is_one_write_too() -> None:
    c, transport, _ = cycle()
    body = b"x" * 100_000
    await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
    await c.send({"type": "http.response.body", "body": body})
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n" + body)


async def test_a_sized_answer_in_parts_and_a_closing_connection() -> None:
    c, transport, done = cycle(keep_alive=False)
    await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await c.send({"type": "http.response.body", "body": b"ab", "more_body": True})
    await c.send({"type": "http.response.body", "body": b"cd"})
    assert transport.writes[0].endswith(b"connection: close\r\n\r\nab") and transport.writes[1:] == [b"cd"]
    assert transport.closed and done == [1]


async def test_a_stream_has_its_head_written_at_once() -> None:
    c, transport, _ = cycle()
    await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    await c.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    assert transport.writes[1] == b"9\r\ndata: 1\n\n\r\n"


async def test_head_requests_get_the_head_alone() -> None:
    c, transport, done = cycle(method="HEAD")
    await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    assert len(transport.writes) == 1
    await c.send({"type": "http.response.body", "body": b""})
    assert done == [1]


@pytest.mark.parametrize("header", [(b"x-a", b"v\r\nx-injected: 1"), (b"x a", b"v"), (b"x-a", b"v\x00")])
async def test_unsafe_headers_are_refused_as_uvicorn_refuses_them(header: tuple[bytes, bytes]) -> None:
    c, transport, _ = cycle()
    with pytest.raises(RuntimeError, match="Invalid HTTP header"):
        await c.send({"type": "http.response.start", "status": 200, "headers": [header, (b"content-length", b"0")]})
    assert transport.writes == []


async def test_a_body_longer_than_declared_is_refused() -> None:
    c, _, _ = cycle()
    await c.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1")]})
    with pytest.raises(RuntimeError, match="longer than Content-Length"):
        await c.send({"type": "http.response.body", "body": b"ab"})
