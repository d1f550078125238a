"""The cache admin API end to end over HTTP: auth on every route, ping, entries, delete, flush."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream

ADMIN_ROUTES = [
    ("GET", "/cache/ping"),
    ("GET", "/cache/stats"),
    ("GET", "/cache/stats?series=1"),
    ("GET", "/cache/entries"),
    ("GET", "/cache/entries/some-key"),
    ("POST", "/cache/delete"),
    ("POST", "/cache/flushall"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_every_admin_route_needs_the_master_key(gateway: GatewayProcess, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-test-master-key"}):
        r = httpx.request(method, gateway.url + path, headers=headers, json={"keys": ["x"]})
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["type"] == "authentication_error"


def test_ping_round_trips_a_probe_key(client: httpx.Client) -> None:
    r = client.get("/cache/ping")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["cache_type"] == "local"
    assert body["ping_response"] is True and body["set_cache_response"] == "success"
    assert body["capabilities"]["shared"] is False


def test_entries_show_what_was_stored_and_delete_removes_it(client: httpx.Client, upstream: StubUpstream) -> None:
    prompt = unique("entry browser")
    key = client.post("/chat/completions", json=chat(prompt)).headers["x-litellm-cache-key"]
    for _ in range(2):
        assert client.post("/chat/completions", json=chat(prompt)).headers["x-reprise-cache"] == "hit"
    listing = client.get("/cache/entries", params={"limit": 1000}).json()
    mine = [e for e in listing["entries"] if e["key"] == key]
    assert len(mine) == 1
    view = mine[0]
    assert view["model"] == "gpt-4o" and view["kind"] == "chat"
    assert prompt in view["preview"]
    assert view["hit_count"] == 2
    assert 0 < view["ttl_left_s"] <= 600 and view["age_s"] >= 0 and view["size_bytes"] > 100
    assert view["usage"]["prompt_tokens"] > 0
    detail = client.get(f"/cache/entries/{key}").json()
    assert detail["body"]["choices"][0]["message"]["content"].startswith("echo: ")
    r = client.post("/cache/delete", json={"keys": [key, "not-a-key"]})
    assert r.json() == {"status": "success", "deleted": 1}
    assert client.get(f"/cache/entries/{key}").status_code == 404
    assert client.post("/chat/completions", json=chat(prompt)).headers["x-reprise-cache"] == "miss"
    assert upstream.calls()["chat"] == 2


def test_delete_validates_its_body(client: httpx.Client) -> None:
    r = client.post("/cache/delete", json={"keys": "abc"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "keys"
    assert client.get("/cache/entries", params={"limit": "0"}).status_code == 400
    for name in ("limit", "scan"):  # a superscript digit passed isdigit() and int() failed: 500
        r = client.get("/cache/entries", params={name: "\u00b2"})
        assert r.status_code == 400 and r.json()["error"]["param"] == name
    assert client.get("/cache/nothing").status_code == 404


def test_flushall_one_namespace_then_everything(make_gateway: Callable[..., GatewayProcess]) -> None:
    gw = make_gateway()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        c.post("/chat/completions", json=chat("kept"))
        c.post("/chat/completions", json=chat("gone", cache={"namespace": "team-a"}))
        c.post("/chat/completions", json=chat("gone too", cache={"namespace": "team-a"}))
        empty = c.post("/cache/flushall", json={"namespace": ""})  # was read as "none": everything flushed
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "namespace"
        r = c.post("/cache/flushall", json={"namespace": "team-a"})
        assert r.json() == {"status": "success", "deleted": 2, "namespace": "team-a"}
        assert c.post("/chat/completions", json=chat("kept")).headers["x-reprise-cache"] == "hit"
        entries = c.get("/cache/entries", params={"namespace": "team-a"}).json()["entries"]
        assert entries == []
        assert c.post("/cache/flushall").json()["deleted"] == 1
        assert c.get("/cache/entries").json()["entries"] == []


def test_admin_bodies_refuse_unknown_fields(make_gateway: Callable[..., GatewayProcess]) -> None:
    """Found from outside: ``{"namspace": "x"}`` (a typo) flushed every entry; unknown fields were ignored."""
    gw = make_gateway()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        kept = unique("kept")
        c.post("/chat/completions", json=chat(kept))
        for path, body, field in [("/cache/flushall", {"namspace": "team-a"}, "namspace"),
                                  ("/cache/flushall", {"namespace": "team-a", "all": True}, "all"),
                                  ("/cache/delete", {"keys": [], "key": "abc"}, "key")]:
            r = c.post(path, json=body)
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            assert (error["type"], error["param"], error["code"]) == (
                "invalid_request_error", field, "unknown_parameter")
            assert repr(field) in error["message"]
        assert c.post("/chat/completions", json=chat(kept)).headers["x-reprise-cache"] == "hit"  # nothing flushed



def test_admin_bodies_refuse_a_member_named_twice(make_gateway: Callable[..., GatewayProcess]) -> None:
    """Found from outside: ``{"namespace": "a", "namespace": "b"}`` was read as "b" (the last), while a
    proxy in front may read the first; an admin body naming a member twice is now a 400, nothing done."""
    gw = make_gateway()
    headers = {**AUTH, "content-type": "application/json"}
    with httpx.Client(base_url=gw.url, headers=headers, timeout=10) as c:
        kept = unique("kept")
        c.post("/chat/completions", json=chat(kept))
        for path, raw, member in [("/cache/flushall", b'{"namespace": "team-a", "namespace": "team-b"}', "namespace"),
                                  ("/key/generate", b'{"tenant": "a", "tenant": "b"}', "tenant"),
                                  ("/key/generate", b'{"cache": {"ttl": 1, "ttl": 2}}', "ttl")]:
            r = c.post(path, content=raw)
            assert r.status_code == 400, (path, r.text)
            error = r.json()["error"]
            assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", member,
                                                                      "duplicate_member")
        assert c.post("/cache/flushall", content=b'{"namespace": "team-a"}').status_code == 200  # once is fine
        assert c.post("/chat/completions", json=chat(kept)).headers["x-reprise-cache"] == "hit"  # nothing flushed
        assert c.get("/key/list").json()["keys"] == []  # no key made

def test_disk_backend_lists_entries_and_answers_ping(make_gateway: Callable[..., GatewayProcess],
                                                     tmp_path: object) -> None:
    gw = make_gateway(cache_params={"type": "disk", "disk_cache_dir": f"{tmp_path}/disk", "ttl": 60})
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        assert c.get("/cache/ping").json()["cache_type"] == "disk"
        key = c.post("/chat/completions", json=chat("on disk")).headers["x-litellm-cache-key"]
        c.post("/chat/completions", json=chat("on disk"))
        (view,) = c.get("/cache/entries").json()["entries"]
        assert view["key"] == key and view["hit_count"] == 1 and view["preview"] == "on disk"


def test_without_a_cache_the_routes_say_so(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream) -> None:
    from tests.server.conftest import gateway_config

    config = gateway_config(stub.url)
    config["litellm_settings"]["cache"] = False
    gw = make_gateway(config)
    r = httpx.get(gw.url + "/cache/ping", headers=AUTH)
    assert r.status_code == 503 and r.json()["error"]["code"] == "cache_disabled"
    assert httpx.get(gw.url + "/cache/stats", headers=AUTH).json()["backend"] is None
