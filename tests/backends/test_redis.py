"""What is specific to the Redis backend: settings, auth, errors, keys on the wire, the lock, the local tier.

The behaviour every store shares is in test_contract.py (run on standalone, cluster
and tiered Redis too).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reprise.backends.base import DistributedLock
from reprise.backends.memory import MemoryBackend
from reprise.backends.redis import LOCK_PREFIX, RedisBackend
from reprise.backends.redis_conn import RedisTarget, resolve_target
from reprise.backends.tiered import TieredBackend
from reprise.cache import AsyncCache, Outcome
from reprise.config import parse_config
from reprise.config.models import RedisCacheParams
from reprise.core.controls import NO_CONTROLS
from reprise.core.policy import CachePolicy, decide
from reprise.errors import BackendTimeout, BackendUnavailable, ConfigError
from tests.support.redis_servers import (
    PASSWORD,
    RedisCluster,
    RedisServer,
    SentinelSet,
    free_port,
)


def params(**values: Any) -> RedisCacheParams:
    return RedisCacheParams.model_validate({"type": "redis", **values})


def config_with(cache_params: dict[str, Any]) -> dict[str, Any]:
    return {"litellm_settings": {"cache": True, "cache_params": {"type": "redis", **cache_params}}}


# -- settings -------------------------------------------------------------------------


def test_config_keys_win_over_environment() -> None:
    env = {"REDIS_URL": "redis://env:1/0", "REDIS_HOST": "envhost", "REDIS_PASSWORD": "envpw"}
    target = resolve_target(params(host="cfg", port=7000, db=2), env)
    assert (target.mode, target.url, target.host, target.port, target.db) == ("standalone", None, "cfg", 7000, 2)
    assert target.password == "envpw"  # credentials fall back field by field, as in LiteLLM
    assert resolve_target(params(host="cfg", password="pw"), env).password == "pw"


def test_environment_is_read_as_litellm_does() -> None:
    assert resolve_target(params(), {"REDIS_URL": "rediss://:x@h:6380/1"}).url == "rediss://:x@h:6380/1"
    target = resolve_target(params(), {"REDIS_HOST": "h", "REDIS_PORT": "6390", "REDIS_PASSWORD": "p"})
    assert (target.host, target.port, target.password, target.url) == ("h", 6390, "p", None)
    assert (resolve_target(params(), {}).host, resolve_target(params(), {}).port) == ("localhost", 6379)


def test_cluster_and_sentinel_topologies() -> None:
    cluster = resolve_target(params(redis_startup_nodes=[{"host": "a", "port": 1}, {"host": "b", "port": "2"}]), {})
    assert (cluster.mode, cluster.nodes) == ("cluster", (("a", 1), ("b", 2)))
    sentinel = resolve_target(params(service_name="m", sentinel_nodes=[["s1", 26379]], sentinel_password="sp"), {})
    assert (sentinel.mode, sentinel.nodes, sentinel.service_name, sentinel.sentinel_password) == (
        "sentinel", (("s1", 26379),), "m", "sp")


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"port": "abc"}, "litellm_settings.cache_params.port"),
        ({"port": 70000}, "litellm_settings.cache_params.port"),
        ({"url": "http://h:1"}, "litellm_settings.cache_params.url"),
        ({"url": "redis://h:99999/0"}, "litellm_settings.cache_params.url"),
        ({"url": "redis://h:port/0"}, "litellm_settings.cache_params.url"),
        ({"socket_timeout": 0}, "litellm_settings.cache_params.socket_timeout"),
        ({"sentinel_nodes": [["h", 1]]}, "litellm_settings.cache_params.service_name"),
        ({"service_name": "m"}, "litellm_settings.cache_params.service_name"),
        ({"redis_startup_nodes": [{"host": "h"}]}, "litellm_settings.cache_params.redis_startup_nodes[0].port"),
        ({"local_tier": {"ttl": -1}}, "litellm_settings.cache_params.local_tier"),
    ],
)
def test_bad_settings_name_the_key(values: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_with(values), environ={})
    assert caught.value.path is not None and caught.value.path.startswith(path)


def test_bad_environment_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisBackend.from_params(params(), {"REDIS_PORT": "six"})
    assert caught.value.path == "litellm_settings.cache_params.port"
    with pytest.raises(ConfigError) as caught:
        RedisBackend.from_params(params(), {"REDIS_URL": "redis://h:x"})
    assert caught.value.path == "litellm_settings.cache_params.url"


def test_unreachable_host_is_not_a_config_error_and_nothing_connects_at_build() -> None:
    backend = RedisBackend.from_params(params(host="127.0.0.1", port=free_port()), {})
    assert isinstance(backend, RedisBackend) and backend._client is None


def test_local_tier_settings() -> None:
    assert params().front_tier is None
    assert params(local_tier=True).front_tier is not None
    assert params(default_in_memory_ttl=2).front_tier.ttl == 2  # type: ignore[union-attr]
    tiered = RedisBackend.from_params(params(local_tier={"ttl": 3, "max_entries": 10}), {})
    assert isinstance(tiered, TieredBackend) and tiered.front_ttl == 3 and tiered.front.max_entries == 10
    assert isinstance(tiered, DistributedLock) and tiered.lock_timeout == 10


# -- on a real server -------------------------------------------------------------------


async def test_keys_and_expiry_are_plain_redis(redis_server: RedisServer) -> None:
    backend = RedisBackend(RedisTarget(port=redis_server.port))
    try:
        await backend.set("team-a:" + "ab" * 32, b"entry-bytes", 30)
        await backend.set("cd" * 32, b"plain", None)
    finally:
        await backend.aclose()
    assert redis_server.cli("GET", "team-a:" + "ab" * 32) == "entry-bytes"
    assert 29_000 < int(redis_server.cli("PTTL", "team-a:" + "ab" * 32)) <= 30_000
    assert redis_server.cli("TTL", "cd" * 32) == "-1"


async def test_password(redis_password_server: RedisServer) -> None:
    good = RedisBackend(RedisTarget(port=redis_password_server.port, password=PASSWORD))
    url = RedisBackend(RedisTarget(url=redis_password_server.url))
    bad = RedisBackend(RedisTarget(port=redis_password_server.port))
    try:
        await good.set("k", b"v", 10)
        assert await url.get("k") == b"v"
        with pytest.raises(BackendUnavailable):
            await bad.get("k")
    finally:
        for backend in (good, url, bad):
            await backend.aclose()


async def test_refused_connection_is_unavailable_and_fast() -> None:
    backend = RedisBackend(RedisTarget(port=free_port()))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await backend.get("k")
    assert time.monotonic() - started < 0.5
    await backend.aclose()


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Redis)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


async def test_hung_server_times_out_within_socket_timeout(silent_port: int) -> None:
    backend = RedisBackend(RedisTarget(port=silent_port, socket_timeout=0.2))
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        await backend.get("k")
    assert time.monotonic() - started < 1.0
    await backend.aclose()


async def test_lock_is_exclusive_owned_and_hidden(redis_server: RedisServer) -> None:
    a = RedisBackend(RedisTarget(port=redis_server.port))
    b = RedisBackend(RedisTarget(port=redis_server.port))
    try:
        assert await a.acquire("ns:key", 5) is True
        assert await b.acquire("ns:key", 5) is False
        await b.release("ns:key")  # not b's: must not free it
        assert await b.acquire("ns:key", 5) is False
        assert [k async for k in a.keys()] == [] or LOCK_PREFIX + "ns:key" not in [k async for k in a.keys()]
        assert await a.clear("ns") == 0
        await a.release("ns:key")
        assert await b.acquire("ns:key", 0.2) is True
        await asyncio.sleep(0.3)  # expired: a crashed holder does not block forever
        assert await a.acquire("ns:key", 5) is True
        await a.release("ns:key")
    finally:
        await a.aclose()
        await b.aclose()



async def test_a_waiting_process_is_seen_by_the_holder_until_its_mark_expires(redis_server: RedisServer) -> None:
    a = RedisBackend(RedisTarget(port=redis_server.port))
    b = RedisBackend(RedisTarget(port=redis_server.port))
    try:
        assert await a.acquire("ns:w", 5)
        assert not await a.has_waiters("ns:w")
        await b.note_waiting("ns:w", 0.2)
        assert await a.has_waiters("ns:w") and not await a.has_waiters("ns:w2")
        assert not [k async for k in a.keys() if "ns:w" in k]  # marks are hidden like locks
        await asyncio.sleep(0.3)
        assert not await a.has_waiters("ns:w")
        await a.release("ns:w")
    finally:
        await a.aclose()
        await b.aclose()

async def test_sentinel_backend_follows_failover(redis_sentinels: SentinelSet) -> None:
    nodes = tuple(("127.0.0.1", s.port) for s in redis_sentinels.sentinels)
    backend = RedisBackend(RedisTarget(mode="sentinel", nodes=nodes, service_name="mymaster"))
    try:
        await backend.set("before", b"1", None)
        redis_sentinels.master.cli("WAIT", "1", "2000")
        new_port = redis_sentinels.failover()
        assert new_port == redis_sentinels.replica.port
        for _ in range(3):  # the first call may land on a connection to the old master
            try:
                assert await backend.get("before") == b"1"
                await backend.set("after", b"2", None)
                break
            except BackendUnavailable:
                await asyncio.sleep(0.1)
        assert redis_sentinels.replica.cli("GET", "after") == "2"
    finally:
        await backend.aclose()


# -- the local tier ---------------------------------------------------------------------


async def test_local_tier_answers_without_round_trip_for_its_ttl(redis_server: RedisServer) -> None:
    tiered = TieredBackend(MemoryBackend(), RedisBackend(RedisTarget(port=redis_server.port)), front_ttl=0.3)
    try:
        await tiered.set("tier:k", b"old", 60)
        redis_server.cli("SET", "tier:k", "new")  # another instance overwrote it
        assert await tiered.get("tier:k") == b"old"  # stale, within front_ttl
        await asyncio.sleep(0.35)
        assert await tiered.get("tier:k") == b"new"  # bound: front_ttl
    finally:
        await tiered.aclose()


async def test_one_warning_per_outage_with_local_tier(caplog: pytest.LogCaptureFixture) -> None:
    back = RedisBackend(RedisTarget(port=free_port()))
    tiered = TieredBackend(MemoryBackend(), back, front_ttl=60)
    cache = AsyncCache(tiered)
    await tiered.front.set("hot", b"x", 60)
    caplog.set_level(logging.WARNING, logger="reprise.cache")
    for _ in range(5):
        await cache.read("cold")  # back down: fault
        await cache.read("hot")  # front hit: not a recovery
    assert cache.stats.backend_errors == 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "failed on get" in messages[0]
    await cache.aclose()


# -- the driver's lock across processes (two caches stand for two gateways) ---------------


async def test_identical_misses_on_two_caches_produce_once(redis_server: RedisServer) -> None:
    caches = [AsyncCache(RedisBackend(RedisTarget(port=redis_server.port))) for _ in range(2)]
    calls = 0

    async def produce() -> Outcome:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return Outcome(200, b'{"answer": 1}')

    plan = decide(CachePolicy(ttl=60), NO_CONTROLS)
    key = f"lock-test:{time.monotonic_ns()}"
    try:
        answers = await asyncio.gather(*(c.get_or_produce(key, plan, produce) for c in caches for _ in range(3)))
    finally:
        for cache in caches:
            await cache.aclose()
    assert calls == 1
    assert {a.body for a in answers} == {b'{"answer": 1}'}
    assert sum(c.stats.coalesced for c in caches) == 5


async def test_failed_producer_frees_the_lock_for_the_others(redis_server: RedisServer) -> None:
    caches = [AsyncCache(RedisBackend(RedisTarget(port=redis_server.port))) for _ in range(2)]
    statuses = iter([500, 200])

    async def produce() -> Outcome:
        await asyncio.sleep(0.2)
        return Outcome(next(statuses), b"{}")

    plan = decide(CachePolicy(ttl=60), NO_CONTROLS)
    key = f"lock-fail:{time.monotonic_ns()}"
    try:
        first, second = await asyncio.gather(*(c.get_or_produce(key, plan, produce) for c in caches))
    finally:
        for cache in caches:
            await cache.aclose()
    assert sorted([first.status, second.status]) == [200, 500]  # errors are not shared across processes


async def test_cluster_get_many_across_slots(redis_cluster: RedisCluster) -> None:
    nodes = tuple(("127.0.0.1", node.port) for node in redis_cluster.nodes)
    backend = RedisBackend(RedisTarget(mode="cluster", nodes=nodes))
    keys = [f"ns{i}:{i:064x}" for i in range(50)]
    try:
        for key in keys[::2]:
            await backend.set(key, key.encode(), 30)
        assert await backend.get_many(keys) == [k.encode() if i % 2 == 0 else None for i, k in enumerate(keys)]
        assert await backend.acquire(keys[1], 5) is True
        await backend.release(keys[1])
    finally:
        await backend.aclose()
