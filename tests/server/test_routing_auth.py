"""Routing and auth as LiteLLM does them (issue 14 item 3), through HTTP against ``reprise serve``:
wildcard model names, ``router_settings.model_group_alias``, and keys sent as ``x-api-key``
or ``api-key`` as well as ``Authorization: Bearer``; and the providers Reprise cannot
reach refused alike by ``serve`` and ``config check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, gateway_config, unique
from tests.server.test_sdk_and_config import run_cli
from tests.support.stub_upstream import StubUpstream


def _entry(name: str, model: str, stub_url: str) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": stub_url, "api_key": "sk-upstream"}}


def routed_config(stub_url: str) -> dict[str, Any]:
    config = gateway_config(stub_url)
    config["model_list"] += [
        _entry("openai/*", "openai/*", stub_url),
        _entry("team/*", "openai/team-*", stub_url),
        _entry("*", "openai/*", stub_url),
    ]
    config["router_settings"] = {
        "model_group_alias": {"gpt-4": "gpt-4o", "hidden-alias": {"model": "gpt-4o-mini", "hidden": True}},
        "routing_strategy": "simple-shuffle",
    }
    return config


@pytest.fixture()
def routed(make_gateway: Callable[..., GatewayProcess], stub: StubUpstream) -> GatewayProcess:
    stub.reset()
    return make_gateway(routed_config(stub.url))


def _sent_model(stub: StubUpstream, prompt: str) -> str:
    for request in stub.requests():
        messages = (request["body"] or {}).get("messages") or []
        if messages and messages[-1].get("content") == prompt:
            return str(request["body"]["model"])
    raise AssertionError(f"the provider never saw {prompt!r}")


@pytest.mark.parametrize(("asked", "sent"), [
    ("openai/gpt-4o", "gpt-4o"),  # openai/* → openai/<matched>
    ("team/alpha", "team-alpha"),  # the matched text fills the entry's own *
    ("some-model", "some-model"),  # * → openai/*
    ("gpt-4o", "gpt-4o"),  # an exact name wins over every pattern
    ("gpt-4", "gpt-4o"),  # an alias reaches its group's deployment
    ("hidden-alias", "gpt-4o-mini"),  # the long form {model, hidden}
])
def test_wildcards_and_aliases_route_as_litellm_does(routed: GatewayProcess, stub: StubUpstream,
                                                     asked: str, sent: str) -> None:
    prompt = unique()
    first = httpx.post(routed.url + "/v1/chat/completions", json=chat(prompt, model=asked), headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.headers["x-reprise-cache"] == "miss"
    assert _sent_model(stub, prompt) == sent
    again = httpx.post(routed.url + "/v1/chat/completions", json=chat(prompt, model=asked), headers=AUTH)
    assert again.headers["x-reprise-cache"] == "hit"
    assert again.json() == first.json()


def test_wildcard_names_are_cached_apart(routed: GatewayProcess, stub: StubUpstream) -> None:
    """Two names a wildcard serves are two models: one's answer never answers the other."""
    prompt = unique()
    one = httpx.post(routed.url + "/v1/chat/completions", json=chat(prompt, model="openai/a"), headers=AUTH)
    two = httpx.post(routed.url + "/v1/chat/completions", json=chat(prompt, model="openai/b"), headers=AUTH)
    assert (one.headers["x-reprise-cache"], two.headers["x-reprise-cache"]) == ("miss", "miss")
    assert stub.calls_for("a") == 1 and stub.calls_for("b") == 1


def test_without_a_catch_all_an_unmatched_name_is_404(make_gateway: Callable[..., GatewayProcess],
                                                      stub: StubUpstream) -> None:
    config = routed_config(stub.url)
    config["model_list"] = [e for e in config["model_list"] if e["model_name"] != "*"]
    gw = make_gateway(config)
    answer = httpx.post(gw.url + "/v1/chat/completions", json=chat(unique(), model="elsewhere/x"), headers=AUTH)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_openai_sdk_reaches_a_wildcard_model_and_lists_visible_aliases(routed: GatewayProcess) -> None:
    with openai.OpenAI(base_url=routed.url + "/v1", api_key=MASTER_KEY) as sdk:
        listed = {m.id for m in sdk.models.list()}
        answer = sdk.chat.completions.create(model="openai/gpt-4o-mini",
                                             messages=[{"role": "user", "content": unique()}])
    assert answer.choices[0].message.content
    assert "gpt-4" in listed and "gpt-4o" in listed
    assert "hidden-alias" not in listed and "*" not in listed


@pytest.mark.parametrize("header", ["x-api-key", "api-key"])
def test_keys_in_x_api_key_and_api_key_headers(gateway: GatewayProcess, header: str) -> None:
    good = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()), headers={header: MASTER_KEY})
    assert good.status_code == 200, good.text
    bad = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()), headers={header: "sk-wrong"})
    assert bad.status_code == 401
    master_only = httpx.get(gateway.url + "/cache/stats", headers={header: MASTER_KEY})
    assert master_only.status_code == 200


def test_a_bearer_token_is_judged_alone(gateway: GatewayProcess) -> None:
    """A wrong bearer token is refused even beside a right x-api-key: one key per request."""
    headers = {"authorization": "Bearer sk-wrong", "x-api-key": MASTER_KEY}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()), headers=headers)
    assert answer.status_code == 401


def test_no_key_names_every_header_accepted(gateway: GatewayProcess) -> None:
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()))
    assert answer.status_code == 401
    message = answer.json()["error"]["message"]
    assert "x-api-key" in message and "api-key" in message


def _refused_by_both(tmp_path: Path, config: dict[str, Any]) -> tuple[str, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    check = run_cli("config", "check", "--config", str(path))
    serve = run_cli("serve", "--config", str(path), "--port", "0")
    assert (check.returncode, serve.returncode) == (2, 2), (check.stdout, serve.stdout)
    return check.stderr, serve.stderr


def test_a_provider_no_one_can_reach_is_refused_by_check_and_serve_alike(tmp_path: Path,
                                                                         stub: StubUpstream) -> None:
    """Not a LiteLLM provider: refused with or without the litellm extra (bedrock/ and the others
    LiteLLM knows are served through it: tests/server/test_litellm_sdk.py)."""
    config = gateway_config(stub.url)
    config["model_list"] += [
        {"model_name": "mistral", "litellm_params": {"model": "mistralai/mistral-7b-instruct"}},
        {"model_name": "mistral-2", "litellm_params": {"model": "mistralai/mistral-7b-instruct-v2"}},
    ]
    check, serve = _refused_by_both(tmp_path, config)
    for text in (check, serve):
        assert "'mistralai'" in text and "mistral, mistral-2" in text
        assert "model_list[" in text


def test_an_alias_to_nothing_is_refused_by_check_and_serve_alike(tmp_path: Path, stub: StubUpstream) -> None:
    config = gateway_config(stub.url)
    config["router_settings"] = {"model_group_alias": {"gpt-5": "nonexistent"}}
    check, serve = _refused_by_both(tmp_path, config)
    for text in (check, serve):
        assert "router_settings.model_group_alias.gpt-5" in text


# --- a credential header sent twice (found from outside) -----------------------------------------------
# Two ``Authorization`` headers were accepted and the first won: a proxy in front that checks the last
# would see a different caller than the gateway. Now a 400 before any key is looked at.

@pytest.mark.parametrize("name", ["authorization", "x-api-key", "api-key"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/cache/stats"])
def test_a_credential_header_sent_twice_is_refused(gateway: GatewayProcess, upstream: StubUpstream,
                                                   name: str, path: str) -> None:
    value = f"Bearer {MASTER_KEY}" if name == "authorization" else MASTER_KEY
    for second in (value, "sk-other"):  # the same key twice is as ambiguous to a proxy as two keys
        headers = [(name, value), (name.upper(), second)]
        if path == "/cache/stats":
            answer = httpx.get(gateway.url + path, headers=headers)
        else:
            answer = httpx.post(gateway.url + path, json=chat(unique()), headers=headers)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error", "duplicate_credentials", name)
    assert upstream.requests() == []


def test_one_of_each_credential_header_is_still_judged_by_the_bearer(gateway: GatewayProcess) -> None:
    headers = [("authorization", f"Bearer {MASTER_KEY}"), ("x-api-key", "sk-other"), ("api-key", "sk-other")]
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()), headers=headers)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("empty", ["", "Bearer"])
def test_an_empty_authorization_header_is_the_credential_judged(gateway: GatewayProcess, upstream: StubUpstream,
                                                                empty: str) -> None:
    """Found from outside: ``Authorization:`` sent empty beside a valid ``x-api-key`` was passed over and
    the x-api-key let in; a proxy in front that reads ``Authorization`` sees an anonymous caller. A present
    Authorization header is the credential, whatever its value: 401."""
    headers = [("authorization", empty), ("x-api-key", MASTER_KEY)]
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=chat(unique()), headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["code"] == "invalid_api_key"
    assert upstream.requests() == []
