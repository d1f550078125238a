"""What is specific to the GCS and Azure Blob backends, on their real emulators.

The shared contract (get/set/ttl/clear/keys...) is in test_contract.py; here:
object names an operator can find, the deadline in the object's metadata and the
lazy delete of an expired object, batched clears, the start-up check (config
errors name the setting; an outage is not a config error), the config models,
and an emulator stopped and restarted under a live backend (fail, then recover).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

from reprise.backends.azure_blob import EXPIRES, AzureBlobBackend, AzureBlobTarget
from reprise.backends.gcs import GcsBackend, GcsTarget
from reprise.backends.object_store import EXPIRES_META
from reprise.config.models import AzureBlobCacheParams, GcsCacheParams
from reprise.errors import BackendError, ConfigError
from tests.support.object_stores import AZURITE_KEY, GCS_CONNECTIONS, Azurite, EmulatorProcess, GcsEmulator
from tests.support.redis_servers import free_port

STORES = ["gcs", "azure-blob"]


def make_backend(server: EmulatorProcess, bucket: str, **extra: Any) -> GcsBackend | AzureBlobBackend:
    if isinstance(server, GcsEmulator):
        return GcsBackend(GcsTarget(bucket=bucket, prefix="pre", endpoint=server.endpoint,
                                    max_connections=GCS_CONNECTIONS, connect_timeout=5, read_timeout=10, **extra))
    assert isinstance(server, Azurite)
    return AzureBlobBackend(AzureBlobTarget(container=bucket, prefix="pre",
                                            connection_string=server.connection_string, **extra))


def new_bucket(server: EmulatorProcess) -> str:
    return server.create_bucket() if isinstance(server, GcsEmulator) else server.create_container()  # type: ignore[attr-defined]


def stored(server: EmulatorProcess, bucket: str) -> dict[str, dict[str, str]]:
    """Object name -> metadata, read with the official SDK (not through Reprise)."""
    if isinstance(server, GcsEmulator):
        return {b.name: dict(b.metadata or {}) for b in server.client().list_blobs(bucket)}  # type: ignore[attr-defined]
    from azure.storage.blob import BlobServiceClient

    assert isinstance(server, Azurite)
    with BlobServiceClient.from_connection_string(server.connection_string) as service:
        container = service.get_container_client(bucket)
        return {b.name: dict(b.metadata or {}) for b in container.list_blobs(include=["metadata"])}


@pytest.fixture(params=STORES)
def server(request: pytest.FixtureRequest) -> EmulatorProcess:
    emulator: EmulatorProcess = request.getfixturevalue("gcs_emulator" if request.param == "gcs" else "azurite")
    return emulator


@pytest.fixture()
async def store(server: EmulatorProcess) -> AsyncIterator[tuple[GcsBackend | AzureBlobBackend, str]]:
    bucket = new_bucket(server)
    backend = make_backend(server, bucket)
    yield backend, bucket
    await backend.aclose()


def deadline_key(server: EmulatorProcess) -> str:
    return EXPIRES_META if isinstance(server, GcsEmulator) else EXPIRES


async def test_object_name_is_prefix_and_key(server: EmulatorProcess,
                                             store: tuple[GcsBackend | AzureBlobBackend, str]) -> None:
    backend, bucket = store
    key = "team-a:" + "ab" * 32
    await backend.set(key, b"entry", 60)
    await backend.set("plain", b"entry", None)
    objects = stored(server, bucket)
    assert set(objects) == {f"pre/{key}", "pre/plain"}
    assert float(objects[f"pre/{key}"][deadline_key(server)]) > 0
    assert deadline_key(server) not in objects["pre/plain"]  # no ttl: never expires


async def test_expired_object_is_deleted_by_the_read(server: EmulatorProcess,
                                                     store: tuple[GcsBackend | AzureBlobBackend, str]) -> None:
    backend, bucket = store
    await backend.set("short", b"v", 0.05)
    await asyncio.sleep(0.2)
    assert "pre/short" in stored(server, bucket)  # no TTL in the store itself
    assert await backend.get("short") is None
    assert "pre/short" not in stored(server, bucket)  # the miss deleted it lazily


async def test_clear_spans_several_batches(server: EmulatorProcess,
                                           store: tuple[GcsBackend | AzureBlobBackend, str]) -> None:
    backend, bucket = store
    keys = [f"ns:{i}" for i in range(300)]  # over GCS's 100 and Azure's 256 per batch
    await asyncio.gather(*(backend.set(key, b"v", None) for key in keys))
    await backend.set("other:1", b"v", None)
    assert await backend.clear("ns") == 300
    assert set(stored(server, bucket)) == {"pre/other:1"}


async def test_other_objects_in_the_bucket_are_left_alone(server: EmulatorProcess,
                                                          store: tuple[GcsBackend | AzureBlobBackend, str]) -> None:
    backend, bucket = store
    foreign = make_backend(server, bucket)
    foreign.names = type(backend.names)("elsewhere")
    await foreign.set("x", b"v", None)
    await backend.set("mine", b"v", None)
    assert [key async for key in backend.keys()] == ["mine"]
    assert await backend.clear() == 1
    assert set(stored(server, bucket)) == {"elsewhere/x"}
    await foreign.aclose()


async def test_check_passes_on_an_existing_bucket(store: tuple[GcsBackend | AzureBlobBackend, str]) -> None:
    await store[0].check()


async def test_check_names_a_missing_bucket(server: EmulatorProcess) -> None:
    backend = make_backend(server, "no-such-bucket")
    with pytest.raises(ConfigError) as error:
        await backend.check()
    setting = "gcs_bucket_name" if isinstance(server, GcsEmulator) else "azure_blob_container"
    assert error.value.path == f"litellm_settings.cache_params.{setting}"
    assert "no-such-bucket" in str(error.value)
    await backend.aclose()


async def test_check_on_an_unreachable_endpoint_is_an_outage_not_a_config_error(server: EmulatorProcess) -> None:
    port = free_port()
    if isinstance(server, GcsEmulator):
        backend: GcsBackend | AzureBlobBackend = GcsBackend(GcsTarget(bucket="b", endpoint=f"http://127.0.0.1:{port}"))
    else:
        cs = server.connection_string.replace(f":{server.port}/", f":{port}/")
        backend = AzureBlobBackend(AzureBlobTarget(container="c", connection_string=cs))
    with pytest.raises(BackendError):
        await backend.check()
    await backend.aclose()


async def test_azure_wrong_key_is_a_config_error_naming_the_connection_string(azurite: Azurite) -> None:
    container = azurite.create_container()
    wrong = azurite.connection_string.replace(AZURITE_KEY, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    backend = AzureBlobBackend(AzureBlobTarget(container=container, connection_string=wrong))
    with pytest.raises(ConfigError) as error:
        await backend.check()
    assert error.value.path == "litellm_settings.cache_params.azure_connection_string"
    await backend.aclose()


def test_azure_malformed_connection_string_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        AzureBlobBackend(AzureBlobTarget(container="c", connection_string="not a connection string"))
    assert error.value.path == "litellm_settings.cache_params.azure_connection_string"


def test_azure_needs_a_connection_string_or_an_account_url() -> None:
    params = AzureBlobCacheParams(type="azure-blob", azure_blob_container="c")
    with pytest.raises(ConfigError, match="azure_account_url"):
        AzureBlobBackend.from_params(params, environ={})


def test_azure_reads_the_connection_string_from_the_environment(azurite: Azurite) -> None:
    params = AzureBlobCacheParams(type="azure-blob", azure_blob_container="c", azure_path="p")
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    backend = AzureBlobBackend.from_params(params, environ=environ)
    assert backend.target.connection_string == azurite.connection_string
    assert backend.names.root == "p/"


def test_gcs_params_and_storage_emulator_host() -> None:
    params = GcsCacheParams(type="gcs", gcs_bucket_name="b", gcs_path="/cache/", max_connections=3)
    backend = GcsBackend.from_params(params, environ={"STORAGE_EMULATOR_HOST": "localhost:9023"})
    assert backend.target.endpoint == "http://localhost:9023"
    assert backend.target.max_connections == 3
    assert backend.names.root == "cache/"
    assert GcsBackend.from_params(params, environ={}).target.endpoint is None


async def test_gcs_missing_service_account_file_is_a_config_error(gcs_emulator: GcsEmulator) -> None:
    backend = GcsBackend(GcsTarget(bucket="b", endpoint=gcs_emulator.endpoint,
                                   service_account_file="/nonexistent/key.json"))
    with pytest.raises(ConfigError) as error:
        await backend.check()
    assert error.value.path == "litellm_settings.cache_params.gcs_path_service_account"
    await backend.aclose()


@pytest.mark.parametrize("kind", STORES)
async def test_store_stopped_then_restarted_fails_then_recovers(kind: str, request: pytest.FixtureRequest) -> None:
    server: EmulatorProcess = request.getfixturevalue("killable_gcs" if kind == "gcs" else "killable_azurite")
    bucket = new_bucket(server)
    backend = make_backend(server, bucket)
    await backend.set("k", b"before", None)
    server.kill(signal.SIGTERM)
    for call in (backend.get("k"), backend.set("k", b"during", None), backend.delete("k")):
        with pytest.raises(BackendError):
            await call
    with pytest.raises(BackendError):
        [key async for key in backend.keys()]
    server.start()  # same port and data: the same client reconnects by itself
    assert await backend.get("k") == b"before"
    await backend.set("k", b"after", None)
    assert await backend.get("k") == b"after"
    await backend.aclose()
