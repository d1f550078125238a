"""What is specific to ``type: s3``, against a real ``moto_server`` and a real ``rclone serve s3``
(each test that uses ``s3_server`` runs on both; the rest is in test_contract.py).

Object names an operator can find, expiry kept in object metadata and deleted lazily,
batched clears, the start-up check's errors, and outages translated into the
BackendError family.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from reprise.backends.object_store import EXPIRES_META, ObjectNames, metadata_value
from reprise.backends.registry import load_backend_class
from reprise.config.models import GatewayConfig
from reprise.core.entry import CacheEntry, encode_entry
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError
from tests.support.object_stores import S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY, MotoS3
from tests.support.redis_servers import free_port
from tests.support.requires import require

require("boto3", "the s3 backend's SDK")
from reprise.backends.s3 import S3Backend, S3Target  # noqa: E402


def target(server: MotoS3 | None, bucket: str, **extra: Any) -> S3Target:
    endpoint = server.endpoint if server else f"http://127.0.0.1:{free_port()}"
    values: dict[str, Any] = {"bucket": bucket, "prefix": "reprise/cache", "endpoint_url": endpoint,
                              "region": S3_REGION, "access_key_id": S3_ACCESS_KEY,
                              "secret_access_key": S3_SECRET_KEY, **extra}
    return S3Target(**values)


@pytest.fixture()
async def s3(s3_server: MotoS3) -> AsyncIterator[S3Backend]:
    backend = S3Backend(target(s3_server, s3_server.create_bucket()))
    yield backend
    await backend.aclose()


def listed(server: MotoS3, bucket: str) -> list[str]:
    client: Any = server.client()
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


# -- object names -------------------------------------------------------------------------


def test_names_round_trip_under_a_prefix() -> None:
    names = ObjectNames("/team/cache/")
    assert names.name("ns:abc") == "team/cache/ns:abc"
    assert names.key("team/cache/ns:abc") == "ns:abc"
    assert names.key("elsewhere/ns:abc") is None and names.key("team/cache/") is None
    assert names.listing_prefix("ns") == "team/cache/ns:"
    assert ObjectNames(None).name("abc") == "abc" and ObjectNames("").listing_prefix() == ""


def test_names_refuse_keys_no_store_accepts() -> None:
    for bad in ("", "new\nline", "nul\x00", "x" * 1025):
        with pytest.raises(BackendError):
            ObjectNames("p").name(bad)


async def test_object_is_named_by_the_cache_key(s3: S3Backend, s3_server: MotoS3) -> None:
    await s3.set("team-a:" + "0" * 64, b"v", None)
    assert listed(s3_server, s3.target.bucket) == ["reprise/cache/team-a:" + "0" * 64]


async def test_only_this_prefix_is_listed_and_cleared(s3: S3Backend, s3_server: MotoS3) -> None:
    client: Any = s3_server.client()
    client.put_object(Bucket=s3.target.bucket, Key="other/thing", Body=b"not ours")
    await s3.set("k", b"v", None)
    assert [key async for key in s3.keys()] == ["k"]
    assert await s3.clear() == 1
    assert listed(s3_server, s3.target.bucket) == ["other/thing"]


# -- expiry without native TTL ---------------------------------------------------------------


async def test_deadline_is_stored_in_metadata(s3: S3Backend, s3_server: MotoS3) -> None:
    await s3.set("short", b"v", 60)
    await s3.set("forever", b"v", None)
    client: Any = s3_server.client()
    short = client.head_object(Bucket=s3.target.bucket, Key="reprise/cache/short")["Metadata"]
    forever = client.head_object(Bucket=s3.target.bucket, Key="reprise/cache/forever")["Metadata"]
    deadline = metadata_value(short, EXPIRES_META)  # header names: any case (rclone title-cases them)
    assert deadline is not None and float(deadline) > 0 and metadata_value(forever, EXPIRES_META) is None


def test_metadata_names_match_without_case() -> None:
    assert metadata_value({"Reprise-Expires-At": "5"}, EXPIRES_META) == "5"
    assert metadata_value({EXPIRES_META: "6"}, EXPIRES_META) == "6"
    assert metadata_value({EXPIRES_META: "8"}, "Reprise-Expires-At") == "8"
    assert metadata_value({"other": "7"}, EXPIRES_META) is None and metadata_value(None, EXPIRES_META) is None


async def test_expired_object_is_a_miss_and_is_deleted(s3: S3Backend, s3_server: MotoS3) -> None:
    entry = encode_entry(CacheEntry(body=b"{}", created_at=1.0, expires_at=None))
    await s3.set("gone", entry, 0.05)
    await asyncio.sleep(0.1)
    assert listed(s3_server, s3.target.bucket) == ["reprise/cache/gone"]  # nothing removed it yet
    assert await s3.get("gone") is None
    assert listed(s3_server, s3.target.bucket) == []  # the read deleted it


async def test_clear_deletes_in_batches_beyond_one_page(s3: S3Backend) -> None:
    keys = [f"ns:{i:05d}" for i in range(1100)]
    await asyncio.gather(*(s3.set(key, b"v", None) for key in keys))
    await s3.set("plain", b"v", None)
    assert await s3.clear("ns") == 1100
    assert [key async for key in s3.keys()] == ["plain"]


# -- start-up check and outages ----------------------------------------------------------------


async def test_check_passes_on_an_existing_bucket(s3: S3Backend) -> None:
    await s3.check()


async def test_missing_bucket_is_a_config_error_naming_the_setting(s3_server: MotoS3) -> None:
    backend = S3Backend(target(s3_server, "no-such-bucket"))
    with pytest.raises(ConfigError, match="s3_bucket_name") as info:
        await backend.check()
    assert "no-such-bucket" in str(info.value)
    await backend.aclose()


class AuthMotoS3(MotoS3):
    """moto checking credentials from the first request on (it accepts any by default)."""

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "INITIAL_NO_AUTH_ACTION_COUNT": "0"}


async def test_rejected_credentials_are_a_config_error(object_store_workdir: Path) -> None:
    server = AuthMotoS3(object_store_workdir).start()
    backend = S3Backend(target(server, "any-bucket", access_key_id="AKIAWRONGWRONGWRONG0"))
    try:
        with pytest.raises(ConfigError, match="s3_aws_access_key_id"):
            await backend.check()
    finally:
        await backend.aclose()
        server.kill()


async def test_unreachable_endpoint_is_an_outage_not_a_config_error() -> None:
    backend = S3Backend(target(None, "bucket", connect_timeout=0.5, read_timeout=0.5))
    with pytest.raises(BackendUnavailable):
        await backend.check()
    with pytest.raises(BackendUnavailable):
        await backend.get("k")
    with pytest.raises(BackendUnavailable):
        await backend.set("k", b"v", None)
    await backend.aclose()


async def test_paused_server_times_out_then_recovers(killable_s3: MotoS3) -> None:
    bucket = killable_s3.create_bucket()
    backend = S3Backend(target(killable_s3, bucket, read_timeout=0.3, connect_timeout=0.3))
    await backend.set("k", b"v", None)
    killable_s3.pause()
    try:
        with pytest.raises(BackendTimeout):
            await backend.get("k")
    finally:
        killable_s3.resume()
    assert await backend.get("k") == b"v"  # same client, same pool: it reconnects by itself
    await backend.aclose()


async def test_closed_backend_refuses_with_backend_unavailable(s3: S3Backend) -> None:
    await s3.aclose()
    with pytest.raises(BackendUnavailable):
        await s3.get("k")


# -- config --------------------------------------------------------------------------------


def config_with(params: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.model_validate({"litellm_settings": {"cache": True, "cache_params": params}})


async def test_litellm_s3_keys_build_the_backend() -> None:
    params = config_with({
        "type": "s3", "s3_bucket_name": "b", "s3_region_name": "eu-west-1", "s3_path": "llm/",
        "s3_endpoint_url": "http://127.0.0.1:9", "s3_aws_access_key_id": "id",
        "s3_aws_secret_access_key": "hunter2-key",
        "s3_aws_session_token": "tok", "s3_api_version": "2006-03-01", "s3_use_ssl": False, "s3_verify": False,
        "s3_config": {"tcp_keepalive": True}, "read_timeout": 5, "max_connections": 4,
    }).cache_params
    backend = load_backend_class("s3").from_params(params)
    assert isinstance(backend, S3Backend)
    assert backend.target.secret_access_key == "hunter2-key" and backend.target.session_token == "tok"
    assert backend.names.root == "llm/" and backend.target.max_connections == 4
    assert "hunter2" not in repr(params)
    await backend.aclose()


def test_bucket_name_is_required() -> None:
    with pytest.raises(ValueError, match="s3_bucket_name"):
        config_with({"type": "s3"})


def test_unknown_s3_config_argument_is_a_config_error() -> None:
    params = config_with({"type": "s3", "s3_bucket_name": "b", "s3_config": {"no_such_option": 1}}).cache_params
    with pytest.raises(ConfigError, match="s3_config"):
        S3Backend.from_params(params)
