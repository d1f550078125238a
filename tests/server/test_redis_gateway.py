"""End to end on ``type: redis``: the gateway's behaviour is the same as on ``local``.

The per-request control, streaming and single-flight tests of the local suite are
imported here and run again, through a gateway whose cache is Redis (with and
without the local tier): the ``gateway`` fixture below overrides conftest's for
this module only. What is specific to Redis topologies, many instances and
outages is in test_redis_topologies.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.server.test_chat_cache import (  # noqa: F401  (collected again, on Redis)
    test_answer_changing_params_are_separate_entries,
    test_miss_then_hit_with_headers,
    test_upstream_errors_pass_through_and_are_never_stored,
)
from tests.server.test_concurrency import (  # noqa: F401
    test_concurrent_errors_are_shared_but_not_stored,
    test_identical_concurrent_misses_call_upstream_once,
    test_identical_concurrent_streams_call_upstream_once,
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
    test_broken_streams_are_never_stored,
    test_stream_and_plain_share_one_entry,
    test_stream_miss_then_replayed_hit,
)
from tests.support.redis_servers import RedisServer
from tests.support.stub_upstream import StubUpstream


@pytest.fixture(scope="module", params=["redis", "redis+local"])
def redis_gateway(request: pytest.FixtureRequest, stub: StubUpstream, redis_server: RedisServer,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    params: dict[str, object] = {"type": "redis", "host": "127.0.0.1", "port": redis_server.port, "ttl": 600}
    if request.param == "redis+local":
        params["local_tier"] = {"ttl": 5}
    gw = GatewayProcess(gateway_config(stub.url, params), tmp_path_factory.mktemp("redis-gw")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def gateway(redis_gateway: GatewayProcess, upstream: StubUpstream) -> GatewayProcess:
    return redis_gateway


def test_stored_key_is_readable_with_redis_cli(client: httpx.Client, redis_server: RedisServer) -> None:
    r = client.post("/chat/completions", json=chat(unique(), cache={"namespace": "team-a", "ttl": 120}))
    key = r.headers["x-litellm-cache-key"]
    assert key.startswith("team-a:") and len(key) == len("team-a:") + 64
    stored = redis_server.cli("GET", key)
    assert r.json()["choices"][0]["message"]["content"] in stored
    assert 100 < int(redis_server.cli("TTL", key)) <= 120


def test_readiness_names_the_backend(gateway: GatewayProcess) -> None:
    body = httpx.get(gateway.url + "/health/readiness", headers=AUTH).json()
    assert body["cache"] in ("redis", "redis+local")
    assert not body["cache_backend_failing"]
