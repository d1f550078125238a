"""LiteLLM's ``cache_params.default_in_redis_ttl`` (issue 14 item 4): Redis entries expire
after it when ``ttl`` is unset; ``ttl`` wins when both are set, as in LiteLLM."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.redis_servers import RedisServer
from tests.support.stub_upstream import StubUpstream


@pytest.mark.parametrize(("extra", "low", "high"), [
    ({"default_in_redis_ttl": 300}, 250, 300),
    ({"default_in_redis_ttl": 300, "ttl": 900}, 850, 900),
])
def test_default_in_redis_ttl_sets_the_expiry(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream,
                                              redis_server: RedisServer, extra: dict[str, int],
                                              low: int, high: int) -> None:
    params = {"type": "redis", "host": "127.0.0.1", "port": redis_server.port, **extra}
    gw = make_gateway(gateway_config(stub.url, params))
    answer = httpx.post(gw.url + "/chat/completions", json=chat(unique()), headers=AUTH)
    key = answer.headers["x-litellm-cache-key"]
    assert low < int(redis_server.cli("TTL", key)) <= high
