"""Single-flight: N identical concurrent misses make exactly one upstream call."""

from __future__ import annotations

import asyncio

import httpx

from reprise.core.streaming import StreamAssembler
from tests.server.conftest import AUTH, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


async def _many(url: str, body: dict[str, object], n: int, stream: bool) -> list[tuple[int, bytes, str]]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20,
                                 limits=httpx.Limits(max_connections=n)) as c:
        async def one() -> tuple[int, bytes, str]:
            r = await c.post("/chat/completions", json={**body, "stream": stream})
            return r.status_code, r.content, r.headers.get("x-reprise-cache", "")
        return await asyncio.gather(*(one() for _ in range(n)))


def test_identical_concurrent_misses_call_upstream_once(gateway: GatewayProcess,
                                                        upstream: StubUpstream) -> None:
    upstream.set_delay(400)
    body = chat(unique())
    results = asyncio.run(_many(gateway.url, body, 20, stream=False))
    assert upstream.calls()["chat"] == 1
    assert {status for status, _, _ in results} == {200}
    assert len({content for _, content, _ in results}) == 1


def test_identical_concurrent_streams_call_upstream_once(gateway: GatewayProcess,
                                                         upstream: StubUpstream) -> None:
    upstream.set_delay(400)
    body = chat(unique())
    results = asyncio.run(_many(gateway.url, body, 10, stream=True))
    assert upstream.calls()["chat"] == 1
    texts = set()
    for status, content, _ in results:
        assert status == 200
        asm = StreamAssembler()
        asm.feed(content)
        assert asm.complete
        texts.add(asm.completion()["choices"][0]["message"]["content"])
    assert len(texts) == 1


def test_concurrent_errors_are_shared_but_not_stored(gateway: GatewayProcess,
                                                     upstream: StubUpstream) -> None:
    upstream.set_delay(300)
    body = chat(unique(), model="fail-500")
    results = asyncio.run(_many(gateway.url, body, 8, stream=False))
    assert {status for status, _, _ in results} == {500}
    assert upstream.calls()["chat"] == 1
    upstream.set_delay(0)
    asyncio.run(_many(gateway.url, body, 1, stream=False))
    assert upstream.calls()["chat"] == 2
