"""What reaches the provider, checked in the bodies the stub provider actually received.

Promised by the README ("The key"): gateway-only fields (credentials, routing, gateway
controls) are neither forwarded nor hashed, so a client cannot choose where or how the
provider is called and two requests differing only in them share an entry; every field
that can change the answer is forwarded *and* hashed. ``stream_options`` is the gateway's
one addition, made only when it will store the streamed answer, dropped (and remembered)
for an upstream model whose provider refuses it by name. A 2xx answer that is not JSON is a 502 and never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

#: One value per gateway-only field; each would change the call if it were obeyed.
GATEWAY_ONLY: dict[str, Any] = {
    "api_base": "http://127.0.0.1:9/v1",
    "base_url": "http://127.0.0.1:9/v1",
    "api_key": "sk-client-chosen",
    "api_version": "2024-02-01",
    "extra_headers": {"x-client-chosen": "1"},
    "extra_body": {"client_chosen": 1},
    "extra_query": {"client_chosen": "1"},
    "timeout": 0.001,
    "request_timeout": 0.001,
    "stream_timeout": 0.001,
    "max_retries": 7,
    "num_retries": 7,
    "cache": {"ttl": 600},
    "caching": True,
    "metadata": {"trace": "client"},
    "mock_response": "mocked by the client",
    "litellm_logging_obj": {"x": 1},
    "proxy_server_request": {"url": "http://evil.example"},
    "secret_fields": {"raw_headers": {"authorization": "Bearer sk-leak"}},
    "user_api_key": "sk-other-user",
    "fallbacks": ["gpt-4o-mini"],
    "context_window_fallbacks": [{"gpt-4o": ["gpt-4o-mini"]}],
    "tags": ["client-tag"],
}
EMBEDDING_MODEL = "text-embedding-3-small"


def received(stub: StubUpstream, marker: str) -> list[dict[str, Any]]:
    """The requests the provider got whose body mentions ``marker`` (a unique prompt)."""
    return [r for r in stub.requests() if r["body"] is not None and marker in orjson.dumps(r["body"]).decode()]


def request_for(kind: str, text: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    if kind == "chat":
        return "/chat/completions", chat(text, **extra)
    return "/embeddings", {"model": EMBEDDING_MODEL, "input": text, **extra}


@pytest.mark.parametrize("kind", ["chat", "embeddings"])
@pytest.mark.parametrize("field", sorted(GATEWAY_ONLY))
def test_gateway_only_field_is_not_forwarded_nor_keyed(client: httpx.Client, upstream: StubUpstream,
                                                       field: str, kind: str) -> None:
    text = unique(f"gateway-only {field}")
    path, body = request_for(kind, text)
    first = client.post(path, json={**body, field: GATEWAY_ONLY[field]})
    assert first.status_code == 200, first.text
    assert first.headers["x-reprise-cache"] == "miss"
    [seen] = received(upstream, text)
    assert field not in seen["body"]
    assert seen["query"] == ""
    assert seen["headers"]["Authorization"] == "Bearer sk-upstream"  # the deployment's key, not the client's
    assert "x-client-chosen" not in {h.lower() for h in seen["headers"]}
    second = client.post(path, json=body)
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
    assert len(received(upstream, text)) == 1


@pytest.mark.parametrize("field", ["temperature", "seed", "top_k"])
def test_answer_changing_field_is_forwarded_and_keyed(client: httpx.Client, upstream: StubUpstream,
                                                      field: str) -> None:
    text = unique(f"forwarded {field}")
    first = client.post("/chat/completions", json=chat(text))
    second = client.post("/chat/completions", json=chat(text, **{field: 1}))
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "miss")
    assert second.headers["x-litellm-cache-key"] != first.headers["x-litellm-cache-key"]
    bodies = [r["body"] for r in received(upstream, text)]
    assert [field in b for b in bodies] == [False, True] and bodies[1][field] == 1


def stream(url: str, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with httpx.stream("POST", url + "/chat/completions", json={**body, "stream": True}, headers=AUTH,
                      timeout=15) as response:
        return response, response.read()


def streamed_text(data: bytes) -> str:
    chunks = [orjson.loads(e[6:]) for e in data.split(b"\n\n") if e.startswith(b"data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_usage_is_asked_for_only_when_the_stream_will_be_stored(gateway: GatewayProcess,
                                                                upstream: StubUpstream) -> None:
    cases: dict[str, dict[str, Any]] = {
        "stored": {},
        "no-store": {"cache": {"no-store": True}},
        "bypassed": {"cache": {"use-cache": False}},
    }
    sent = {}
    for name, extra in cases.items():
        text = unique(f"stream options {name}")
        response, data = stream(gateway.url, chat(text, **extra))
        assert response.status_code == 200 and data.endswith(b"data: [DONE]\n\n")
        [seen] = received(upstream, text)
        sent[name] = seen["body"].get("stream_options")
    assert sent == {"stored": {"include_usage": True}, "no-store": None, "bypassed": None}


@pytest.mark.parametrize("options", [{"include_usage": True}, {"include_usage": False}])
@pytest.mark.parametrize("controls", [{}, {"cache": {"no-store": True}}])
def test_client_stream_options_are_forwarded_as_sent(gateway: GatewayProcess, upstream: StubUpstream,
                                                     options: dict[str, Any], controls: dict[str, Any]) -> None:
    text = unique("own stream options")
    response, _ = stream(gateway.url, chat(text, stream_options=options, **controls))
    assert response.status_code == 200
    [seen] = received(upstream, text)
    assert seen["body"]["stream_options"] == options


def test_deployment_refusing_stream_options_is_retried_once_then_remembered(
    make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream
) -> None:
    gw = make_gateway()  # its own process: the refusal is remembered per process
    first = unique("refuses options")
    response, data = stream(gw.url, chat(first, model="reject-stream-options"))
    assert response.status_code == 200, data
    assert data.endswith(b"data: [DONE]\n\n") and streamed_text(data).startswith(f"echo: {first} #")
    tried = [r["body"].get("stream_options") for r in received(upstream, first)]
    assert tried == [{"include_usage": True}, None]

    second = unique("refuses options again")
    response, _ = stream(gw.url, chat(second, model="reject-stream-options"))
    assert response.status_code == 200
    assert [r["body"].get("stream_options") for r in received(upstream, second)] == [None]

    own = unique("refuses client options")
    response, data = stream(gw.url, chat(own, model="reject-stream-options", stream_options={"include_usage": True}))
    assert response.status_code == 400
    assert "stream_options" in orjson.loads(data)["error"]["message"]
    assert len(received(upstream, own)) == 1


def test_a_stream_error_not_about_stream_options_is_neither_retried_nor_remembered(
    make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream
) -> None:
    """A 400 about anything else (the stub's names no option) is the client's answer after one call."""
    gw = make_gateway()
    text = unique("plain 400 on a stream")
    response, data = stream(gw.url, chat(text, model="fail-400"))
    assert response.status_code == 400, data
    assert [r["body"].get("stream_options") for r in received(upstream, text)] == [{"include_usage": True}]


def wildcard_gateway(make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream) -> GatewayProcess:
    config = gateway_config(upstream.url)
    config["model_list"] = [{"model_name": "*", "litellm_params": {
        "model": "openai/*", "api_base": upstream.url, "api_key": "sk-upstream", "timeout": 3}}]
    return make_gateway(config)


def test_a_passing_400_on_a_stream_does_not_cost_the_model_its_usage(
    make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream
) -> None:
    """A 400 that names no option, then answers as usual: later streams are still stored with usage."""
    gw = wildcard_gateway(make_gateway, upstream)
    model = unique("hiccup-400").replace(" ", "-")
    first = unique("hiccup")
    response, _ = stream(gw.url, chat(first, model=model))
    assert response.status_code == 400
    later = unique("after the hiccup")
    response, _ = stream(gw.url, chat(later, model=model))
    assert response.status_code == 200
    assert [r["body"].get("stream_options") for r in received(upstream, later)] == [{"include_usage": True}]
    plain = httpx.post(gw.url + "/chat/completions", json=chat(later, model=model), headers=AUTH, timeout=15)
    assert plain.headers["x-reprise-cache"] == "hit" and plain.json()["usage"]["total_tokens"] > 0


def test_a_refusal_behind_a_wildcard_entry_is_remembered_for_that_model_only(
    make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream
) -> None:
    gw = wildcard_gateway(make_gateway, upstream)
    refused = unique("wildcard refuses options")
    response, _ = stream(gw.url, chat(refused, model="reject-stream-options"))
    assert response.status_code == 200
    assert [r["body"].get("stream_options") for r in received(upstream, refused)] == [{"include_usage": True}, None]

    other = unique("wildcard other model")
    response, _ = stream(gw.url, chat(other, model="gpt-4o"))
    assert response.status_code == 200
    assert [r["body"].get("stream_options") for r in received(upstream, other)] == [{"include_usage": True}]
    plain = httpx.post(gw.url + "/chat/completions", json=chat(other, model="gpt-4o"), headers=AUTH, timeout=15)
    assert plain.headers["x-reprise-cache"] == "hit" and plain.json()["usage"]["total_tokens"] > 0


def test_non_json_answer_is_a_502_never_stored(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique("not json"), model="invalid-json")
    for call in (1, 2):
        r = client.post("/chat/completions", json=body)
        assert r.status_code == 502, r.text
        error = r.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"} and "invalid-json" in error["message"]
        assert upstream.calls_for("invalid-json") == call  # not stored: the repeat asks again
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as r:
        data = r.read()
    assert r.status_code == 502, data
    assert orjson.loads(data)["error"]["message"]
    assert upstream.calls_for("invalid-json") == 3


def test_non_json_embeddings_answer_is_a_502(client: httpx.Client, upstream: StubUpstream) -> None:
    body = {"model": "invalid-json", "input": unique("not json vectors")}
    for call in (1, 2):
        r = client.post("/embeddings", json=body)
        assert r.status_code == 502, r.text
        assert "error" in r.json()
        assert upstream.calls_for("invalid-json") == call


def test_credentials_in_api_base_are_sent_as_basic_auth_never_in_the_url(
        make_gateway: Callable[..., GatewayProcess], stub: StubUpstream, upstream: StubUpstream) -> None:
    """``http://user:pass@host`` as an api_base without api_key: the provider gets HTTP Basic auth
    (found: with an api_key too, aiohttp refused the URL and streamed requests hung)."""
    port = stub.url.rsplit(":", 1)[1].split("/")[0]
    config = {
        "model_list": [
            {"model_name": "basic", "litellm_params": {"model": "openai/gpt-4o",
                                                       "api_base": f"http://us%40er:p%3Ass@127.0.0.1:{port}"}},
            {"model_name": "both", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-upstream",
                                                      "api_base": f"http://user:pass@127.0.0.1:{port}"}},
        ],
        "general_settings": {"master_key": "sk-test-master-key"},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local"}},
    }
    gw = make_gateway(config)
    for model, auth in (("basic", "Basic dXNAZXI6cDpzcw=="), ("both", "Bearer sk-upstream")):
        text = unique(model)
        plain = httpx.post(gw.url + "/chat/completions", json=chat(text, model=model), headers=AUTH, timeout=10)
        assert plain.status_code == 200, plain.text
        streamed, _ = stream(gw.url, chat(unique(model), model=model))
        assert streamed.status_code == 200
        sent = received(stub, text)
        assert sent and {r["headers"].get("Authorization") for r in sent} == {auth}


def test_an_entrys_organization_and_extra_headers_reach_the_provider_and_credentials_stay_its_own(
        make_gateway: Callable[..., GatewayProcess], upstream: StubUpstream) -> None:
    """Found from outside: ``organization`` and ``extra_headers`` of a LiteLLM entry were ignored."""
    config = gateway_config(upstream.url)
    config["model_list"][0]["litellm_params"].update(
        organization="org-zero-retention",
        extra_headers={"OpenAI-Project": "proj_restricted", "authorization": "Bearer not-this"})
    gateway = make_gateway(config)
    text = unique("org headers")
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=10) as client:
        assert client.post("/chat/completions", json=chat(text)).status_code == 200
    [seen] = received(upstream, text)
    assert [n for n in seen["headers"] if n.lower() == "authorization"] == ["Authorization"]  # one, the deployment's
    headers = {name.lower(): value for name, value in seen["headers"].items()}
    assert headers["openai-organization"] == "org-zero-retention"
    assert headers["openai-project"] == "proj_restricted"
    assert headers["authorization"] == "Bearer sk-upstream"
