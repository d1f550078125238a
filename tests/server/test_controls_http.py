"""Per-request controls through HTTP: the body's ``cache`` object and Cache-Control."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


def post(client: httpx.Client, body: dict[str, object], **headers: str) -> httpx.Response:
    return client.post("/chat/completions", json=body, headers=headers)


def test_ttl_expires_entry(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    post(client, chat(prompt, cache={"ttl": 1}))
    assert post(client, chat(prompt)).headers["x-reprise-cache"] == "hit"
    time.sleep(1.2)
    assert post(client, chat(prompt)).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_s_maxage_rejects_older_entries(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    post(client, chat(prompt))
    time.sleep(1.1)
    assert post(client, chat(prompt, cache={"s-maxage": 60})).headers["x-reprise-cache"] == "hit"
    assert post(client, chat(prompt, cache={"s-maxage": 1})).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_no_cache_refreshes_the_entry(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    old = post(client, chat(prompt)).json()
    fresh = post(client, chat(prompt, cache={"no-cache": True}))
    assert fresh.headers["x-reprise-cache"] == "bypass"
    assert fresh.json() != old
    again = post(client, chat(prompt))
    assert again.headers["x-reprise-cache"] == "hit"
    assert again.json() == fresh.json()
    assert upstream.calls()["chat"] == 2


def test_no_store_does_not_store(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    post(client, chat(prompt, cache={"no-store": True}))
    assert post(client, chat(prompt)).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_namespace_isolates_and_prefixes_key(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    a = post(client, chat(prompt, cache={"namespace": "team-a"}))
    assert a.headers["x-litellm-cache-key"].startswith("team-a:")
    assert post(client, chat(prompt, cache={"namespace": "team-b"})).headers["x-reprise-cache"] == "miss"
    assert post(client, chat(prompt)).headers["x-reprise-cache"] == "miss"
    assert post(client, chat(prompt, cache={"namespace": "team-a"})).headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 3


def test_cache_control_header(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    post(client, chat(prompt), **{"Cache-Control": "no-store"})
    assert post(client, chat(prompt)).headers["x-reprise-cache"] == "miss"
    assert post(client, chat(prompt), **{"Cache-Control": "no-cache"}).headers["x-reprise-cache"] == "bypass"
    time.sleep(1.1)
    assert post(client, chat(prompt), **{"Cache-Control": "max-age=1"}).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 4  # no-store, miss, no-cache, too old for max-age


def test_use_cache_false_bypasses(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique()
    post(client, chat(prompt))
    r = post(client, chat(prompt, cache={"use-cache": False}))
    assert r.headers["x-reprise-cache"] == "bypass"
    assert upstream.calls()["chat"] == 2


@pytest.mark.parametrize(
    ("cache", "param"),
    [({"ttl": "abc"}, "cache.ttl"), ({"no-cache": "yes"}, "cache.no-cache"),
     ({"namespace": "a/b"}, "cache.namespace"), ({"bogus": 1}, "cache.bogus"), ([1], "cache")],
)
def test_malformed_control_is_400_naming_field(client: httpx.Client, cache: object, param: str) -> None:
    r = post(client, chat(unique(), cache=cache))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_default_off_mode_needs_use_cache(make_gateway: Callable[..., GatewayProcess],
                                          stub: StubUpstream) -> None:
    from tests.server.conftest import gateway_config

    gw = make_gateway(gateway_config(stub.url, {"type": "local", "mode": "default_off"}))
    stub.reset()
    prompt = unique()
    with httpx.Client(base_url=gw.url, headers=AUTH) as c:
        assert post(c, chat(prompt)).headers["x-reprise-cache"] == "bypass"
        assert post(c, chat(prompt)).headers["x-reprise-cache"] == "bypass"
        assert post(c, chat(prompt, cache={"use-cache": True})).headers["x-reprise-cache"] == "miss"
        assert post(c, chat(prompt, cache={"use-cache": True})).headers["x-reprise-cache"] == "hit"
    assert stub.calls()["chat"] == 3
