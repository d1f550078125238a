"""The in-process library: the same cache, async and sync, without the proxy."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import reprise
from reprise import AsyncCache, Cache
from reprise.core.keys import chat_key_hash, storage_key
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


class RateLimited(Exception):
    """Stands in for ``openai.RateLimitError``: a caller's own exception type, with attributes."""

    status_code = 429


def _key(request: dict[str, Any]) -> str:
    return storage_key(chat_key_hash(request), None)


def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "hang guard"
        time.sleep(0.005)


async def test_every_waiter_raises_the_exception_call_raised() -> None:
    """Found from outside: of 4 identical concurrent chats whose one shared ``call`` raised
    RateLimitError, only the leader got it; the followers got an UpstreamError, so
    ``except openai.RateLimitError`` worked in one caller out of N."""
    calls = 0
    release = asyncio.Event()

    async def call(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await release.wait()
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as exc:
            raise RateLimited("slow down") from exc

    async with AsyncCache() as cache:
        waiters = [asyncio.ensure_future(cache.chat(REQUEST, call)) for _ in range(4)]
        async with asyncio.timeout(30):  # hang guard
            while (flight := cache.flights.current(_key(REQUEST))) is None or flight.followers < 3:
                await asyncio.sleep(0)
        release.set()
        got = await asyncio.gather(*waiters, return_exceptions=True)
    assert calls == 1
    error = got[0]
    assert isinstance(error, RateLimited) and all(other is error for other in got)
    assert isinstance(error.__cause__, ConnectionResetError)  # its own cause kept, not cut `from None`
    # Raised by four tasks, it carries one caller's frames and ``call``'s, not every earlier caller's.
    names = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert names.count("chat") == 1 and names[-1] == "call"


def test_every_thread_raises_the_exception_call_raised() -> None:
    release = threading.Event()
    calls = 0

    def call(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        release.wait(30)
        raise RateLimited("slow down")

    errors: list[BaseException] = []

    def ask(cache: Cache) -> None:
        try:
            cache.chat(REQUEST, call)
        except BaseException as exc:  # every outcome is recorded
            errors.append(exc)

    with Cache() as cache:
        threads = [threading.Thread(target=ask, args=(cache,), daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        _wait_until(lambda: (f := cache._async.flights.current(_key(REQUEST))) is not None and f.followers == 3)
        release.set()
        for thread in threads:
            thread.join(30)
    assert calls == 1
    assert len(errors) == 4 and all(isinstance(exc, RateLimited) for exc in errors)


@pytest.mark.parametrize(("field", "value"), [
    ("ttl", -5), ("ttl", 0), ("ttl", float("nan")), ("ttl", "600"), ("ttl", True),
    ("mode", "on"), ("enabled", "yes"), ("namespace", "a b"), ("namespace", ""),
])
def test_a_policy_that_would_cache_nothing_is_refused(field: str, value: Any) -> None:
    """Found from outside: CachePolicy(ttl=-5 | 0 | nan) was accepted and nothing was ever cached,
    while the same ttl in a request's ``cache`` controls is a RequestError."""
    with pytest.raises(reprise.ConfigError, match=f"CachePolicy.{field}"):
        CachePolicy(**{field: value})


def test_a_policy_of_good_values_is_kept() -> None:
    assert CachePolicy(ttl=1).ttl == 1
    assert CachePolicy(ttl=float("inf"), namespace="team-a.v1", mode="default_off", enabled=False)


async def test_a_closed_async_cache_refuses_chat() -> None:
    """Found from outside: after aclose() an AsyncCache called the provider on every chat (one
    backend warning), where the sync Cache raises "this Cache is closed"."""
    calls = 0

    async def call(req: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return answer("late")

    cache = AsyncCache()
    await cache.aclose()
    with pytest.raises(RuntimeError, match="this AsyncCache is closed"):
        await cache.chat(REQUEST, call)
    assert calls == 0


def _chat_in_thread(cache: Cache, call: Callable[[dict[str, Any]], Any]) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def run() -> None:
        try:
            got.append(cache.chat(REQUEST, call).status)
        except BaseException as exc:  # every outcome is recorded
            got.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def _blocking_call(text: str) -> tuple[threading.Event, threading.Event, Callable[[dict[str, Any]], dict[str, Any]]]:
    """A ``call`` that says when it has begun (``entered``) and answers ``text`` once ``release`` is set."""
    entered, release = threading.Event(), threading.Event()

    def call(req: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        return answer(text)

    return entered, release, call


def test_close_lets_a_call_in_flight_finish() -> None:
    """Found from outside: Cache.close() while another thread was in chat() stopped the loop under
    it, and that thread waited forever, with neither an answer nor an exception."""
    entered, release, call = _blocking_call("finished")
    cache = Cache()
    caller, got = _chat_in_thread(cache, call)
    assert entered.wait(30)
    closer = threading.Thread(target=cache.close, daemon=True)  # waits up to 30 s by default
    closer.start()

    def refuses() -> bool:
        try:
            cache.read("absent")
        except RuntimeError:
            return True
        return False

    _wait_until(refuses)  # close() has begun: new calls are refused, the one in flight goes on
    release.set()
    caller.join(30)
    closer.join(30)
    assert got == ["miss"] and not closer.is_alive()
    with pytest.raises(RuntimeError, match="this Cache is closed"):
        cache.chat(REQUEST, call)


def test_close_cancels_a_call_past_its_timeout() -> None:
    entered, release, call = _blocking_call("too late")
    cache = Cache()
    try:
        caller, got = _chat_in_thread(cache, call)
        assert entered.wait(30)
        cache.close(timeout=0)
        caller.join(30)
        assert len(got) == 1 and isinstance(got[0], RuntimeError)
        assert "closed while this call was in flight" in str(got[0])
        with pytest.raises(RuntimeError, match="this Cache is closed"):
            cache.chat(REQUEST, call)
    finally:
        release.set()  # the blocking call itself ends in its thread; its answer is dropped


@pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "5", True])
def test_close_refuses_a_bad_timeout(timeout: Any) -> None:
    with Cache() as cache:
        with pytest.raises(ValueError, match="timeout"):
            cache.close(timeout=timeout)
        assert cache.chat(REQUEST, lambda req: answer("open")).status == "miss"  # still open
