"""End to end on ``type: gcs`` and ``type: azure-blob``: the gateway behaves as on ``local``.

The per-request control tests of the local suite (ttl, s-maxage, no-cache, no-store,
namespace) are imported and run again through a gateway whose cache is the GCS
emulator or Azurite, driven by the official SDKs. Below them, what is specific to
object stores: the object is named by the ``x-litellm-cache-key`` header, an
emulator killed mid-test fails open with one warning and recovers, entries
survive a gateway restart, and a missing bucket or container stops start-up.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.server.test_cache_admin import (  # noqa: F401  (collected again, on object stores)
    test_entries_show_what_was_stored_and_delete_removes_it,
)
from tests.server.test_cache_cli import cli
from tests.server.test_chat_cache import (  # noqa: F401
    test_miss_then_hit_with_headers,
    test_upstream_errors_pass_through_and_are_never_stored,
)
from tests.server.test_controls_http import (  # noqa: F401
    test_namespace_isolates_and_prefixes_key,
    test_no_cache_refreshes_the_entry,
    test_no_store_does_not_store,
    test_s_maxage_rejects_older_entries,
    test_ttl_expires_entry,
    test_use_cache_false_bypasses,
)
from tests.server.test_redis_topologies import warnings_in
from tests.server.test_streaming import (  # noqa: F401  (back to back: the stream is stored before it ends)
    assemble,
    stream,
    test_stream_and_plain_share_one_entry,
    test_stream_miss_then_replayed_hit,
)
from tests.support.object_stores import GCS_CONNECTIONS, Azurite, EmulatorProcess, GcsEmulator
from tests.support.redis_servers import wait_until
from tests.support.stub_upstream import StubUpstream

STORES = ["gcs", "azure-blob"]


def store_params(kind: str, server: EmulatorProcess, bucket: str, **extra: Any) -> dict[str, Any]:
    """cache_params for ``kind`` on ``server`` (GCS finds the emulator by STORAGE_EMULATOR_HOST)."""
    common = {"ttl": 600, "connect_timeout": 5, "read_timeout": 10, **extra}
    if kind == "gcs":
        return {"type": "gcs", "gcs_bucket_name": bucket, "gcs_path": "reprise",
                "max_connections": GCS_CONNECTIONS, **common}
    assert isinstance(server, Azurite)
    return {"type": "azure-blob", "azure_blob_container": bucket, "azure_path": "reprise",
            "azure_connection_string": server.connection_string, **common}


def new_bucket(server: EmulatorProcess) -> str:
    return server.create_bucket() if isinstance(server, GcsEmulator) else server.create_container()  # type: ignore[attr-defined]


def object_names(server: EmulatorProcess, bucket: str) -> set[str]:
    """What the store holds, listed with the official SDK (not through Reprise)."""
    if isinstance(server, GcsEmulator):
        return {blob.name for blob in server.client().list_blobs(bucket)}  # type: ignore[attr-defined]
    from azure.storage.blob import BlobServiceClient

    assert isinstance(server, Azurite)
    with BlobServiceClient.from_connection_string(server.connection_string) as service:
        return set(service.get_container_client(bucket).list_blob_names())


@pytest.fixture()
def emulator_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[EmulatorProcess], None]:
    """Point a GCS gateway (a child process, which inherits the environment) at an emulator."""

    def point(server: EmulatorProcess) -> None:
        if isinstance(server, GcsEmulator):
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)

    return point


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest) -> tuple[str, EmulatorProcess]:
    fixture = "gcs_emulator" if request.param == "gcs" else "azurite"
    return request.param, request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def store_gateway(store: tuple[str, EmulatorProcess], stub: StubUpstream,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    kind, server = store
    bucket = new_bucket(server)
    with pytest.MonkeyPatch.context() as patch:
        if isinstance(server, GcsEmulator):
            patch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
        config = gateway_config(stub.url, store_params(kind, server, bucket))
        gw = GatewayProcess(config, tmp_path_factory.mktemp(f"{kind}-gw")).start()
    yield gw, bucket
    gw.stop()


@pytest.fixture()
def gateway(store_gateway: tuple[GatewayProcess, str], upstream: StubUpstream) -> GatewayProcess:
    return store_gateway[0]


def test_object_is_named_by_the_cache_key_header(client: httpx.Client, store: tuple[str, EmulatorProcess],
                                                 store_gateway: tuple[GatewayProcess, str]) -> None:
    r = client.post("/chat/completions", json=chat(unique(), cache={"namespace": "team-a"}))
    key = r.headers["x-litellm-cache-key"]
    assert key.startswith("team-a:")
    assert f"reprise/{key}" in object_names(store[1], store_gateway[1])


def test_stream_is_stored_then_replayed(client: httpx.Client, upstream: StubUpstream,
                                        store: tuple[str, EmulatorProcess],
                                        store_gateway: tuple[GatewayProcess, str]) -> None:
    # A stream is stored after its last event reaches the client, so the replay waits
    # for the object to exist (the local suite's back-to-back version races the write).
    body = chat(unique("tell me a story"))
    r1, d1 = stream(client, body)
    assert r1.headers["x-reprise-cache"] == "miss"
    name = f"reprise/{r1.headers['x-litellm-cache-key']}"
    wait_until(lambda: name in object_names(store[1], store_gateway[1]), 10, "the stream's entry")
    r2, d2 = stream(client, body)
    assert r2.headers["x-reprise-cache"] == "hit"
    assert d2.endswith(b"data: [DONE]\n\n")
    assert assemble(d2).completion()["choices"] == assemble(d1).completion()["choices"]
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 1


def test_readiness_names_the_backend(gateway: GatewayProcess, store: tuple[str, EmulatorProcess]) -> None:
    body = httpx.get(gateway.url + "/health/readiness", headers=AUTH).json()
    assert body["cache"] == store[0]
    assert not body["cache_backend_failing"]


# --- outages, restarts and start-up: each test has its own emulator or gateway --------------------


@pytest.mark.parametrize("kind", STORES)
def test_store_killed_mid_test_fails_open_then_recovers(
        kind: str, request: pytest.FixtureRequest, make_gateway: Callable[..., GatewayProcess],
        stub: StubUpstream, emulator_env: Callable[[EmulatorProcess], None]) -> None:
    server: EmulatorProcess = request.getfixturevalue("killable_gcs" if kind == "gcs" else "killable_azurite")
    bucket = new_bucket(server)
    emulator_env(server)
    gw = make_gateway(gateway_config(stub.url, store_params(kind, server, bucket)))
    stub.reset()
    prompt = unique("outage")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        before = [c.post("/chat/completions", json=chat(prompt)) for _ in range(3)]
        server.kill(signal.SIGTERM)  # a stop: Azurite saves its metadata only then (SIGKILL loses it)
        during = [c.post("/chat/completions", json=chat(prompt)) for _ in range(5)]
        failing = c.get("/health/readiness").json()["cache_backend_failing"]
        server.start()  # same port, same data directory
        after = [c.post("/chat/completions", json=chat(prompt)) for _ in range(3)]
        healthy = c.get("/health/readiness").json()["cache_backend_failing"]
    assert [r.headers["x-reprise-cache"] for r in before] == ["miss", "hit", "hit"]
    assert {r.status_code for r in during} == {200}  # never an error for the caller
    assert failing is True
    assert [r.headers["x-reprise-cache"] for r in after] == ["hit"] * 3  # the entry was on disk
    assert healthy is False
    assert stub.calls()["chat"] == 1 + len(during)
    assert warnings_in(gw.log) == (1, 1), gw.log  # one warning for the outage, one line for recovery


@pytest.mark.parametrize("kind", STORES)
def test_entries_survive_a_gateway_restart(
        kind: str, request: pytest.FixtureRequest, make_gateway: Callable[..., GatewayProcess],
        stub: StubUpstream, emulator_env: Callable[[EmulatorProcess], None]) -> None:
    server: EmulatorProcess = request.getfixturevalue("gcs_emulator" if kind == "gcs" else "azurite")
    bucket = new_bucket(server)
    emulator_env(server)
    config = gateway_config(stub.url, store_params(kind, server, bucket))
    stub.reset()
    body = chat(unique("restart"))
    first = make_gateway(config)
    assert httpx.post(first.url + "/chat/completions", json=body, headers=AUTH).headers["x-reprise-cache"] == "miss"
    first.stop()
    second = make_gateway(config)
    again = httpx.post(second.url + "/chat/completions", json=body, headers=AUTH)
    assert again.headers["x-reprise-cache"] == "hit"
    assert stub.calls()["chat"] == 1


@pytest.mark.parametrize("kind", STORES)
def test_missing_bucket_stops_start_up_naming_the_setting(
        kind: str, request: pytest.FixtureRequest, stub: StubUpstream, tmp_path: Path,
        emulator_env: Callable[[EmulatorProcess], None]) -> None:
    server: EmulatorProcess = request.getfixturevalue("gcs_emulator" if kind == "gcs" else "azurite")
    emulator_env(server)
    gw = GatewayProcess(gateway_config(stub.url, store_params(kind, server, "no-such-bucket")), tmp_path)
    with pytest.raises(RuntimeError, match="gateway exited"):
        gw.start()
    setting = "gcs_bucket_name" if kind == "gcs" else "azure_blob_container"
    assert f"litellm_settings.cache_params.{setting}" in gw.log


@pytest.mark.parametrize("kind", STORES)
def test_unreachable_store_at_start_up_fails_open(
        kind: str, request: pytest.FixtureRequest, make_gateway: Callable[..., GatewayProcess],
        stub: StubUpstream, emulator_env: Callable[[EmulatorProcess], None]) -> None:
    server: EmulatorProcess = request.getfixturevalue("killable_gcs" if kind == "gcs" else "killable_azurite")
    bucket = new_bucket(server)
    server.kill()
    emulator_env(server)
    gw = make_gateway(gateway_config(stub.url, store_params(kind, server, bucket)))
    stub.reset()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        codes = {c.post("/chat/completions", json=chat(unique("down"))).status_code for _ in range(3)}
        assert c.get("/health/readiness").json()["cache_backend_failing"] is True
    assert codes == {200}
    assert stub.calls()["chat"] == 3
    assert warnings_in(gw.log) == (1, 0), gw.log


@pytest.mark.parametrize("kind", STORES)
def test_flush_and_cli_list_and_clear_by_namespace(
        kind: str, request: pytest.FixtureRequest, make_gateway: Callable[..., GatewayProcess],
        stub: StubUpstream, emulator_env: Callable[[EmulatorProcess], None]) -> None:
    server: EmulatorProcess = request.getfixturevalue("gcs_emulator" if kind == "gcs" else "azurite")
    bucket = new_bucket(server)
    emulator_env(server)  # the CLI below inherits it too
    gw = make_gateway(gateway_config(stub.url, store_params(kind, server, bucket)))
    path = str(gw.config_path)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        for prompt, namespace in (("a", "team-a"), ("b", "team-a"), ("c", "team-b"), ("d", None)):
            extra: dict[str, Any] = {"cache": {"namespace": namespace}} if namespace else {}
            assert c.post("/chat/completions", json=chat(unique(prompt), **extra)).status_code == 200
        assert len(c.get("/cache/entries", params={"namespace": "team-a"}).json()["entries"]) == 2
        flushed = c.post("/cache/flushall", json={"namespace": "team-a"}).json()
        assert flushed == {"status": "success", "deleted": 2, "namespace": "team-a"}
    listing = cli("ls", "--config", path, "--namespace", "team-b")
    assert listing.returncode == 0, listing.stderr
    assert len(listing.stdout.splitlines()) == 2  # header + the one team-b entry
    cleared = cli("flush", "--config", path, "--yes")
    assert cleared.returncode == 0, cleared.stderr
    assert "2 entries removed" in cleared.stdout
    assert object_names(server, bucket) == set()
