"""End to end on ``type: s3`` against a real ``moto_server`` and a real ``rclone serve s3`` (the tests
that use ``s3_server`` run on both): the gateway behaves as on ``local``.

The per-request control, chat, streaming and admin tests of the local suite are
imported and run again through a gateway whose cache is S3 (the ``gateway``
fixture below overrides conftest's for this module only). Then what is specific
to an object store: entries named by the cache key, surviving a gateway restart,
a missing bucket refusing start-up, and outages (store down at start-up, paused,
killed and restarted) that never fail a request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from reprise.backends.object_store import EXPIRES_META, metadata_value
from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.server.test_cache_admin import (  # noqa: F401  (collected again, on S3)
    test_entries_show_what_was_stored_and_delete_removes_it,
)
from tests.server.test_chat_cache import (  # noqa: F401
    test_answer_changing_params_are_separate_entries,
    test_miss_then_hit_with_headers,
    test_upstream_errors_pass_through_and_are_never_stored,
)
from tests.server.test_concurrency import (  # noqa: F401
    test_identical_concurrent_misses_call_upstream_once,
)
from tests.server.test_controls_http import (  # noqa: F401
    test_cache_control_header,
    test_namespace_isolates_and_prefixes_key,
    test_no_cache_refreshes_the_entry,
    test_no_store_does_not_store,
    test_s_maxage_rejects_older_entries,
    test_ttl_expires_entry,
    test_use_cache_false_bypasses,
)
from tests.server.test_streaming import (  # noqa: F401
    test_stream_and_plain_share_one_entry,
    test_stream_miss_then_replayed_hit,
)
from tests.support.object_stores import MotoS3
from tests.support.redis_servers import free_port
from tests.support.stub_upstream import StubUpstream

MakeGateway = Callable[..., GatewayProcess]
PREFIX = "reprise/e2e"


@pytest.fixture(scope="module")
def s3_gateway(stub: StubUpstream, s3_server: MotoS3,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    params = s3_server.params(s3_server.create_bucket(), s3_path=PREFIX, ttl=600)
    gw = GatewayProcess(gateway_config(stub.url, params), tmp_path_factory.mktemp("s3-gw")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def gateway(s3_gateway: GatewayProcess, upstream: StubUpstream) -> GatewayProcess:
    return s3_gateway


def ask(client: httpx.Client, prompt: str, **extra: Any) -> httpx.Response:
    return client.post("/chat/completions", json=chat(prompt, **extra))


def warnings_in(log: str) -> tuple[int, int]:
    """(outage warnings, recovery lines) the driver wrote."""
    lines = log.splitlines()
    failed = sum("cache backend" in line and "failed on" in line for line in lines)
    recovered = sum("cache backend" in line and "recovered" in line for line in lines)
    return failed, recovered


def test_object_is_found_from_the_cache_key_header(client: httpx.Client, s3_gateway: GatewayProcess,
                                                  s3_server: MotoS3) -> None:
    r = ask(client, unique(), cache={"namespace": "team-a", "ttl": 120})
    key = r.headers["x-litellm-cache-key"]
    assert key.startswith("team-a:")
    bucket = _bucket_of(s3_gateway)
    s3: Any = s3_server.client()
    stored = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
    assert r.json()["choices"][0]["message"]["content"].encode() in stored["Body"].read()
    deadline = float(metadata_value(stored["Metadata"], EXPIRES_META) or "nan")  # any case: rclone title-cases
    assert time.time() < deadline <= time.time() + 120


def _bucket_of(gw: GatewayProcess) -> str:
    import yaml

    config = yaml.safe_load(gw.config_path.read_text())
    return str(config["litellm_settings"]["cache_params"]["s3_bucket_name"])


def test_ping_and_readiness_name_the_backend(client: httpx.Client) -> None:
    ping = client.get("/cache/ping").json()
    assert ping["cache_type"] == "s3" and ping["status"] == "healthy"
    assert ping["capabilities"]["shared"] is True and ping["capabilities"]["native_ttl"] is False
    ready = client.get("/health/readiness").json()
    assert ready["cache"] == "s3" and not ready["cache_backend_failing"]


def test_entries_survive_a_gateway_restart(make_gateway: MakeGateway, stub: StubUpstream, s3_server: MotoS3) -> None:
    config = gateway_config(stub.url, s3_server.params(s3_server.create_bucket(), ttl=600))
    prompt = unique("persistent")
    first = make_gateway(config)
    with httpx.Client(base_url=first.url, headers=AUTH, timeout=10) as c:
        assert ask(c, prompt).headers["x-reprise-cache"] == "miss"
    first.stop()
    stub.reset()
    second = make_gateway(config)
    with httpx.Client(base_url=second.url, headers=AUTH, timeout=10) as c:
        assert ask(c, prompt).headers["x-reprise-cache"] == "hit"
    assert stub.calls()["chat"] == 0


def test_flushall_and_cli_on_s3(make_gateway: MakeGateway, stub: StubUpstream, s3_server: MotoS3) -> None:
    gw = make_gateway(gateway_config(stub.url, s3_server.params(s3_server.create_bucket(), ttl=600)))
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        ask(c, "kept")
        ask(c, "gone", cache={"namespace": "team-a"})
        ask(c, "gone too", cache={"namespace": "team-a"})
        stats = subprocess.run([sys.executable, "-m", "reprise.cli.main", "cache", "stats", "--config",
                                str(gw.config_path), "--json"], capture_output=True, text=True, timeout=60)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["namespaces"] == {"-": 1, "team-a": 2}
        r = c.post("/cache/flushall", json={"namespace": "team-a"})
        assert r.json() == {"status": "success", "deleted": 2, "namespace": "team-a"}
        assert ask(c, "kept").headers["x-reprise-cache"] == "hit"
        assert c.get("/cache/entries", params={"namespace": "team-a"}).json()["entries"] == []


def test_missing_bucket_refuses_to_start_naming_the_setting(stub: StubUpstream, s3_server: MotoS3,
                                                            tmp_path: Any) -> None:
    gw = GatewayProcess(gateway_config(stub.url, s3_server.params("no-such-bucket")), tmp_path)
    with pytest.raises(RuntimeError) as info:
        gw.start()
    assert "s3_bucket_name" in str(info.value) and "no-such-bucket" in str(info.value)


def test_store_down_at_start_up_fails_open(make_gateway: MakeGateway, stub: StubUpstream) -> None:
    params = {"type": "s3", "s3_bucket_name": "b", "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",
              "s3_aws_access_key_id": "k", "s3_aws_secret_access_key": "s", "s3_region_name": "us-east-1"}
    gw = make_gateway(gateway_config(stub.url, params))
    stub.reset()
    prompt = unique()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        responses = [ask(c, prompt) for _ in range(10)]
        ready = c.get("/health/readiness").json()
    assert {r.status_code for r in responses} == {200}
    assert stub.calls()["chat"] == 10
    assert ready["cache_backend_failing"] is True
    assert warnings_in(gw.log) == (1, 0), gw.log


def test_paused_store_fails_open_then_recovers(make_gateway: MakeGateway, stub: StubUpstream,
                                               killable_s3: MotoS3) -> None:
    params = killable_s3.params(killable_s3.create_bucket(), read_timeout=0.3, connect_timeout=0.3)
    gw = make_gateway(gateway_config(stub.url, params))
    prompt = unique("paused")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        assert ask(c, prompt).headers["x-reprise-cache"] == "miss"
        assert ask(c, prompt).headers["x-reprise-cache"] == "hit"
        killable_s3.pause()
        try:
            during = [ask(c, prompt) for _ in range(5)]
        finally:
            killable_s3.resume()
        after = [ask(c, prompt) for _ in range(3)]
    assert [(r.status_code, r.headers["x-reprise-cache"]) for r in during] == [(200, "miss")] * 5
    assert [r.headers["x-reprise-cache"] for r in after] == ["hit"] * 3  # the data was kept
    assert warnings_in(gw.log) == (1, 1), gw.log


def test_killed_store_fails_open_then_recovers(make_gateway: MakeGateway, stub: StubUpstream,
                                               killable_s3: MotoS3) -> None:
    bucket = killable_s3.create_bucket()
    gw = make_gateway(gateway_config(stub.url, killable_s3.params(bucket, ttl=600)))
    prompts = [unique(f"load {i}") for i in range(5)]
    results: list[tuple[int, str]] = []
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for i in range(60):
            if i == 20:
                killable_s3.kill()
            elif i == 40:
                killable_s3.start()
                killable_s3.create_bucket(bucket)  # moto keeps buckets in memory: a restart is empty
            r = ask(c, prompts[i % len(prompts)])
            results.append((r.status_code, r.headers["x-reprise-cache"]))
    assert [code for code, _ in results if code != 200] == []
    assert all(word == "hit" for _, word in results[5:20])  # warm before the outage
    assert all(word == "miss" for _, word in results[20:40])  # answered by the upstream meanwhile
    assert results[-10:] == [(200, "hit")] * 10  # stored again once it is back, then hit
    assert warnings_in(gw.log) == (1, 1), gw.log
