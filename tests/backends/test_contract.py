"""One suite over every backend: what the driver relies on, whatever the store.

A new backend adds one branch to the ``backend`` fixture (and, for a service,
a session fixture that starts it); every test below then runs against it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from reprise.backends.base import Backend, Capabilities
from reprise.backends.disk import DiskBackend
from reprise.backends.memory import MemoryBackend
from reprise.backends.redis import RedisBackend
from reprise.backends.redis_conn import RedisTarget
from reprise.backends.tiered import TieredBackend
from reprise.errors import BackendError
from tests.support.redis_servers import (
    RedisCluster,
    RedisServer,
)

TTL = 0.2


def _memory(_: Path) -> Backend:
    return MemoryBackend()


def _disk(tmp_path: Path) -> Backend:
    return DiskBackend(directory=tmp_path / "disk")


def _redis(request: pytest.FixtureRequest) -> Backend:
    server: RedisServer = request.getfixturevalue("redis_server")
    server.cli("FLUSHALL")
    return RedisBackend(RedisTarget(port=server.port))


def _redis_cluster(request: pytest.FixtureRequest) -> Backend:
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    cluster.flush()
    nodes = tuple(("127.0.0.1", node.port) for node in cluster.nodes)
    return RedisBackend(RedisTarget(mode="cluster", nodes=nodes))


def _redis_tiered(request: pytest.FixtureRequest) -> Backend:
    return TieredBackend(MemoryBackend(), _redis(request), front_ttl=5)


def _s3(request: pytest.FixtureRequest, fixture: str = "moto_s3") -> Backend:
    from reprise.backends.s3 import S3Backend, S3Target
    from tests.support.object_stores import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoS3

    server: MotoS3 = request.getfixturevalue(fixture)
    return S3Backend(S3Target(bucket=server.create_bucket(), prefix="cache", endpoint_url=server.endpoint,
                              region=S3_REGION, access_key_id=S3_ACCESS_KEY, secret_access_key=S3_SECRET_KEY))


def _gcs(request: pytest.FixtureRequest) -> Backend:
    from reprise.backends.gcs import GcsBackend, GcsTarget
    from tests.support.object_stores import GCS_CONNECTIONS, GcsEmulator

    server: GcsEmulator = request.getfixturevalue("gcs_emulator")
    return GcsBackend(GcsTarget(bucket=server.create_bucket(), prefix="cache", endpoint=server.endpoint,
                                max_connections=GCS_CONNECTIONS, connect_timeout=5, read_timeout=10))


def _azure_blob(request: pytest.FixtureRequest) -> Backend:
    from reprise.backends.azure_blob import AzureBlobBackend, AzureBlobTarget
    from tests.support.object_stores import Azurite

    server: Azurite = request.getfixturevalue("azurite")
    return AzureBlobBackend(AzureBlobTarget(container=server.create_container(), prefix="cache",
                                            connection_string=server.connection_string))


BACKENDS: dict[str, Callable[[Path], Backend]] = {"memory": _memory, "disk": _disk}
#: Backends on a service: built from the service's session fixture.
SERVICE_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "redis": _redis, "redis-cluster": _redis_cluster, "redis+local": _redis_tiered,
    "s3": _s3, "s3-rclone": lambda request: _s3(request, "rclone_s3"), "gcs": _gcs, "azure-blob": _azure_blob,
}


@pytest.fixture(params=sorted(BACKENDS) + sorted(SERVICE_BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param in SERVICE_BACKENDS:
        store = SERVICE_BACKENDS[request.param](request)
    else:
        store = BACKENDS[request.param](tmp_path)
    yield store
    await store.aclose()


async def _all_keys(store: Backend, namespace: str | None = None) -> set[str]:
    return {key async for key in store.keys(namespace)}


def test_satisfies_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend.name, str) and backend.name
    assert isinstance(backend.capabilities, Capabilities)


async def test_get_missing_is_none(backend: Backend) -> None:
    assert await backend.get("absent") is None


async def test_set_then_get(backend: Backend) -> None:
    await backend.set("k", b"value", None)
    assert await backend.get("k") == b"value"


async def test_overwrite_replaces(backend: Backend) -> None:
    await backend.set("k", b"first", None)
    await backend.set("k", b"second, longer", None)
    assert await backend.get("k") == b"second, longer"
    assert await _all_keys(backend) == {"k"}


async def test_delete(backend: Backend) -> None:
    await backend.set("k", b"v", None)
    assert await backend.delete("k") is True
    assert await backend.get("k") is None
    assert await backend.delete("k") is False


async def test_get_many_keeps_order_and_gaps(backend: Backend) -> None:
    await backend.set("a", b"1", None)
    await backend.set("c", b"3", None)
    assert await backend.get_many(["c", "b", "a", "c"]) == [b"3", None, b"1", b"3"]
    assert await backend.get_many([]) == []


async def test_get_many_beyond_one_batch(backend: Backend) -> None:
    keys = [f"k{i:04d}" for i in range(1200)]
    for key in keys[::2]:
        await backend.set(key, key.encode(), None)
    got = await backend.get_many(keys)
    assert got == [key.encode() if i % 2 == 0 else None for i, key in enumerate(keys)]


async def test_clear_all(backend: Backend) -> None:
    for key in ("a", "ns:b", "other:c"):
        await backend.set(key, b"v", None)
    assert await backend.clear() == 3
    assert await _all_keys(backend) == set()
    assert await backend.get("ns:b") is None


async def test_clear_namespace(backend: Backend) -> None:
    for key in ("plain", "ns:1", "ns:2", "ns2:3", "other:ns:4"):
        await backend.set(key, b"v", None)
    assert await backend.clear("ns") == 2
    assert await _all_keys(backend) == {"plain", "ns2:3", "other:ns:4"}


async def test_keys_listing(backend: Backend) -> None:
    expected = {f"ns:{i}" for i in range(700)} | {"plain", "nsx:1"}
    for key in expected:
        await backend.set(key, b"v", None)
    assert await _all_keys(backend) == expected
    assert await _all_keys(backend, "ns") == {f"ns:{i}" for i in range(700)}
    assert await _all_keys(backend, "missing") == set()


async def test_ttl_expiry(backend: Backend) -> None:
    await backend.set("short", b"v", TTL)
    await backend.set("long", b"v", 60)
    await backend.set("forever", b"v", None)
    assert await backend.get("short") == b"v"
    await asyncio.sleep(TTL * 1.5)
    assert await backend.get("short") is None
    assert await backend.get_many(["short", "long", "forever"]) == [None, b"v", b"v"]
    assert await _all_keys(backend) == {"long", "forever"}
    assert await backend.delete("short") is False


async def test_nonpositive_ttl_is_not_stored(backend: Backend) -> None:
    await backend.set("k", b"old", None)
    await backend.set("k", b"new", 0)
    assert await backend.get("k") is None


async def test_overwrite_resets_ttl(backend: Backend) -> None:
    await backend.set("k", b"v1", TTL)
    await backend.set("k", b"v2", None)
    await asyncio.sleep(TTL * 1.5)
    assert await backend.get("k") == b"v2"


async def test_large_value(backend: Backend) -> None:
    value = os.urandom(5 * 2**20)
    await backend.set("big", value, None)
    assert await backend.get("big") == value


async def test_binary_values_round_trip(backend: Backend) -> None:
    values = {"nul": b"\x00" * 10, "all": bytes(range(256)), "empty": b"", "utf": "é😀".encode()}
    for key, value in values.items():
        await backend.set(key, value, None)
    assert await backend.get_many(list(values)) == list(values.values())


async def test_unusual_keys(backend: Backend, request: pytest.FixtureRequest) -> None:
    # rclone serve s3 keeps each object as a file, so one name component holds at most 255 bytes
    # (real S3 allows 1,024); Reprise's own keys are far shorter (a namespace is at most 128 characters).
    long = 250 if request.node.callspec.params["backend"] == "s3-rclone" else 300
    keys = ["a:b:c", "é:ü", "with space", "x" * long, "%_'\""]
    for key in keys:
        await backend.set(key, key.encode(), None)
    assert await backend.get_many(keys) == [key.encode() for key in keys]


async def test_aclose_is_idempotent(backend: Backend) -> None:
    await backend.set("k", b"v", None)
    await backend.aclose()
    await backend.aclose()
    try:
        await backend.get("k")
    except BackendError:
        pass  # a closed store may refuse, but only with the BackendError family
