"""The in-process library: the same cache, async and sync, without the proxy."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import reprise
from reprise import AsyncCache, Cache
from reprise.core.policy import CachePolicy

REQUEST = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def answer(text: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def test_public_api_is_pinned() -> None:
    assert sorted(reprise.__all__) == sorted([
        "AsyncCache", "BackendError", "Cache", "CachePolicy", "CacheResult", "ConfigError", "RepriseError",
        "RequestError", "UpstreamError", "__version__",
    ])


async def test_async_cache_hit_miss_and_controls() -> None:
    calls: list[dict[str, Any]] = []

    async def call(req: dict[str, Any]) -> dict[str, Any]:
        calls.append(req)
        return answer(f"n{len(calls)}")

    async with AsyncCache(policy=CachePolicy(ttl=60)) as cache:
        first = await cache.chat(REQUEST, call)
        second = await cache.chat(REQUEST, call)
        assert (first.status, second.status) == ("miss", "hit")
        assert second.response == first.response
        assert first.key is not None and len(first.key) == 64
        assert "cache" not in calls[0]
        fresh = await cache.chat({**REQUEST, "cache": {"no-cache": True}}, call)
        assert fresh.response["choices"][0]["message"]["content"] == "n2"
        spaced = await cache.chat({**REQUEST, "cache": {"namespace": "t"}}, call)
        assert spaced.status == "miss" and spaced.key and spaced.key.startswith("t:")
    assert len(calls) == 3


async def test_async_single_flight_and_errors_not_stored() -> None:
    calls = 0

    async def slow(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return answer("once")

    cache = AsyncCache()
    results = await asyncio.gather(*(cache.chat(REQUEST, slow) for _ in range(10)))
    assert calls == 1
    assert {r.response["choices"][0]["message"]["content"] for r in results} == {"once"}

    async def failing(req: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("provider down")

    other = {**REQUEST, "seed": 1}
    with pytest.raises(RuntimeError):
        await cache.chat(other, failing)
    assert (await cache.chat(other, slow)).status == "miss"
    await cache.aclose()


def test_sync_cache_threads_coalesce() -> None:
    calls = 0
    lock = threading.Lock()

    def call(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        with lock:
            calls += 1
        time.sleep(0.2)
        return answer("sync")

    with Cache() as cache:
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(cache.chat(REQUEST, call).status))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == 1
        assert sorted(results).count("miss") == 8
        assert cache.chat(REQUEST, call).status == "hit"
        assert cache.stats.hits == 1


@pytest.mark.parametrize("returned", [
    {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "cut"}, "finish_reason": None}]},
    {"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
     "error": {"message": "overloaded"}},
    {"error": {"message": "not a completion"}},
], ids=["unfinished", "carries-error", "not-a-completion"])
async def test_only_finished_completions_are_stored(returned: dict[str, Any]) -> None:
    """Found from outside: the library stored whatever ``call`` returned, so an unfinished answer
    (or an error body) became every later caller's hit; the gateway never stores those."""
    calls = 0

    async def call(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return returned

    async with AsyncCache() as cache:
        first = await cache.chat(REQUEST, call)
        second = await cache.chat(REQUEST, call)
    assert first.response == returned and second.response == returned
    assert (first.status, second.status, calls) == ("miss", "miss", 2)
