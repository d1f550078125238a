"""Virtual keys and tenants: cache partitions that no request can cross."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

KEY_A, KEY_A2 = "sk-team-a-1-0123456", "sk-team-a-2-0123456"
KEY_B, KEY_OFF = "sk-team-b-1-0123456", "sk-team-c-off-012345"


def tenant_config(stub_url: str, keys_file: Path) -> dict[str, Any]:
    config = gateway_config(stub_url)
    config["general_settings"].update({
        "virtual_keys": [
            {"key": KEY_A, "tenant": "team-a"},
            {"key_sha256": hashlib.sha256(KEY_A2.encode()).hexdigest(), "tenant": "team-a"},
            {"key": KEY_B, "team_id": "team-b"},
            {"key": KEY_OFF, "tenant": "team-c", "cache": {"mode": "default_off"}},
        ],
        "shared_namespaces": ["public"],
        "keys_file": str(keys_file),
    })
    return config


@pytest.fixture()
def tenants(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream, tmp_path: Path) -> GatewayProcess:
    gw = make_gateway(tenant_config(stub.url, tmp_path / "keys.json"))
    stub.reset()
    return gw


def ask(gw: GatewayProcess, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def test_tenants_never_share_entries(tenants: GatewayProcess, stub: StubUpstream) -> None:
    body = chat(unique())
    a = ask(tenants, KEY_A, body)
    assert a.headers["x-litellm-cache-key"].startswith("team-a/default:")
    assert ask(tenants, KEY_A2, body).headers["x-reprise-cache"] == "hit"  # same tenant, other key
    assert ask(tenants, KEY_B, body).headers["x-reprise-cache"] == "miss"
    assert ask(tenants, "sk-test-master-key", body).headers["x-reprise-cache"] == "miss"
    assert stub.calls()["chat"] == 3


def test_request_namespace_stays_inside_the_tenant(tenants: GatewayProcess, stub: StubUpstream) -> None:
    body = chat(unique())
    ask(tenants, KEY_A, {**body, "cache": {"namespace": "docs"}})
    for ns in ("docs", "team-a", "team-a.docs", "default"):
        r = ask(tenants, KEY_B, {**body, "cache": {"namespace": ns}})
        assert r.headers["x-reprise-cache"] == "miss", ns
        assert r.headers["x-litellm-cache-key"].startswith("team-b/")
    bad = ask(tenants, KEY_B, {**body, "cache": {"namespace": "team-a/docs"}})
    assert bad.status_code == 400
    assert ask(tenants, KEY_A, {**body, "cache": {"namespace": "docs"}}).headers["x-reprise-cache"] == "hit"


def test_shared_namespace_is_shared_on_purpose(tenants: GatewayProcess, stub: StubUpstream) -> None:
    body = chat(unique(), cache={"namespace": "public"})
    assert ask(tenants, KEY_A, body).headers["x-litellm-cache-key"].startswith("public:")
    assert ask(tenants, KEY_B, body).headers["x-reprise-cache"] == "hit"
    assert stub.calls()["chat"] == 1


def test_embeddings_are_partitioned_too(tenants: GatewayProcess, stub: StubUpstream) -> None:
    body = {"model": "text-embedding-3-small", "input": unique()}
    for key in (KEY_A, KEY_A2):
        httpx.post(tenants.url + "/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})
    r = httpx.post(tenants.url + "/embeddings", json=body, headers={"Authorization": f"Bearer {KEY_B}"})
    assert r.headers["x-reprise-cache"] == "miss"
    assert stub.calls()["embeddings"] == 2


def test_per_key_default_off(tenants: GatewayProcess, stub: StubUpstream) -> None:
    body = chat(unique())
    assert ask(tenants, KEY_OFF, body).headers["x-reprise-cache"] == "bypass"
    assert ask(tenants, KEY_OFF, body).headers["x-reprise-cache"] == "bypass"
    opted = {**body, "cache": {"use-cache": True}}
    ask(tenants, KEY_OFF, opted)
    assert ask(tenants, KEY_OFF, opted).headers["x-reprise-cache"] == "hit"


def test_unknown_and_revoked_keys(tenants: GatewayProcess, tmp_path: Path) -> None:
    assert ask(tenants, "sk-nobody", chat("x")).status_code == 401
    created = httpx.post(tenants.url + "/key/generate", json={"tenant": "team-d"}, headers=AUTH)
    assert created.status_code == 200
    key = created.json()["key"]
    assert all(key.encode() not in f.read_bytes() for f in tmp_path.glob("keys.json*"))  # stored hashed
    assert ask(tenants, key, chat(unique())).status_code == 200
    listed = httpx.get(tenants.url + "/key/list", headers=AUTH).json()["keys"]
    assert {"team-a", "team-d"} <= {k["tenant"] for k in listed}
    assert all(KEY_A not in str(k) for k in listed)
    assert httpx.post(tenants.url + "/key/delete", json={"keys": [key]}, headers=AUTH).json() == {"deleted": 1}
    assert ask(tenants, key, chat(unique())).status_code == 401


def test_key_admin_needs_the_master_key(tenants: GatewayProcess) -> None:
    r = httpx.post(tenants.url + "/key/generate", json={"tenant": "x"}, headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 403
    assert httpx.get(tenants.url + "/key/list").status_code == 401
    r = httpx.post(tenants.url + "/key/delete", json={"keys": [KEY_A]}, headers=AUTH)
    assert r.status_code == 400  # config keys are revoked by editing the config


def test_one_tenants_flood_does_not_evict_another_tenants_entries(
        make_gateway: Callable[..., GatewayProcess], stub: StubUpstream, tmp_path: Path) -> None:
    """Found from outside: tenant B's cheap embeddings requests pushed tenant A's chat entries out
    of the shared ``local`` byte bound (plain LRU). Now the owner above its share is evicted first."""
    config = tenant_config(stub.url, tmp_path / "keys.json")
    config["litellm_settings"]["cache_params"] = {"type": "local", "ttl": 600, "max_bytes": 200_000}
    gw = make_gateway(config)
    bodies = [chat(unique()) for _ in range(20)]
    for body in bodies:
        assert ask(gw, KEY_A, body).headers["x-reprise-cache"] == "miss"
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30) as b:
        for i in range(300):  # ~1.5 MB of answers through a 200 KB store
            r = b.post("/embeddings", json={"model": "text-embedding-3-small", "input": f"{unique()} {i}",
                                            "dimensions": 256})
            assert r.status_code == 200, r.text
        flood = [b.post("/embeddings", json={"model": "text-embedding-3-small", "input": "the same",
                                             "dimensions": 256}).headers["x-reprise-cache"] for _ in range(2)]
    assert flood == ["miss", "hit"]  # tenant B is still served from its own share
    assert [ask(gw, KEY_A, body).headers["x-reprise-cache"] for body in bodies] == ["hit"] * 20


def test_key_admin_bodies_refuse_unknown_fields(tenants: GatewayProcess) -> None:
    """Found from outside: an unknown field was ignored, so ``{"key": "sk-..."}`` (for ``keys``) revoked
    nothing and said so with a 200, and a misspelt cache default made a key without it."""
    created = httpx.post(tenants.url + "/key/generate", json={"tenant": "team-e"}, headers=AUTH).json()["key"]
    for path, body, field in [
        ("/key/delete", {"key": created}, "key"),
        ("/key/delete", {"keys": [created], "force": True}, "force"),
        ("/key/generate", {"tenant": "team-f", "max_budget": 10}, "max_budget"),
        ("/key/generate", {"tenant": "team-f", "cache": {"mdoe": "default_off"}}, "cache.mdoe"),
    ]:
        r = httpx.post(tenants.url + path, json=body, headers=AUTH)
        assert r.status_code == 400, (path, r.text)
        error = r.json()["error"]
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", field, "unknown_parameter")
    both = httpx.post(tenants.url + "/key/generate", json={"tenant": "team-f", "team_id": "team-g"}, headers=AUTH)
    assert both.status_code == 400 and both.json()["error"]["param"] == "team_id"
    assert ask(tenants, created, chat(unique())).status_code == 200  # not revoked
    assert "team-f" not in {k["tenant"] for k in httpx.get(tenants.url + "/key/list", headers=AUTH).json()["keys"]}
