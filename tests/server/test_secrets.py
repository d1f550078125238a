"""No secret ever leaves the gateway: not in its debug log, error bodies, or listing routes.

Secrets: the master key, virtual keys (from the config and from ``/key/generate``) and the
provider's ``api_key``. The only response allowed to hold one is ``/key/generate``'s,
which returns the new key once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.server.conftest import MASTER_KEY, GatewayProcess, chat, free_port, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

TEAM_KEY = "sk-team-secret-7f3a9c"
UPSTREAM_KEY = "sk-upstream-secret-51d2e8"


def test_secrets_never_appear_in_logs_or_answers(stub: StubUpstream, tmp_path: Path,
                                                 make_gateway: Callable[..., GatewayProcess]) -> None:
    config = gateway_config(stub.url, keys_file=str(tmp_path / "keys.json"),
                            virtual_keys=[{"key": TEAM_KEY, "tenant": "team-a"}])
    for entry in config["model_list"]:
        if "api_key" in entry["litellm_params"]:
            entry["litellm_params"]["api_key"] = UPSTREAM_KEY
    config["model_list"].append({"model_name": "down", "litellm_params": {
        "model": "openai/down", "api_base": f"http://127.0.0.1:{free_port()}/v1", "api_key": UPSTREAM_KEY}})
    gw = GatewayProcess(config, tmp_path, extra_args=["--log-level", "debug"]).start()
    try:
        master = {"Authorization": f"Bearer {MASTER_KEY}"}
        created = httpx.post(gw.url + "/key/generate", json={"tenant": "team-b"}, headers=master)
        generated = created.json()["key"]
        secrets = [MASTER_KEY, TEAM_KEY, UPSTREAM_KEY, generated]
        bodies = exercise(gw.url, master, {"Authorization": f"Bearer {TEAM_KEY}"},
                          {"Authorization": f"Bearer {generated}"})
        assert len(bodies) > 20
        for where, text in bodies:
            for secret in secrets:
                assert secret not in text, f"{where} holds a secret"
                assert secret[7:] not in text, f"{where} holds part of a secret"
    finally:
        gw.stop()
    log = gw.log
    assert "reprise.access" in log and "ERROR reprise.server" in log  # requests and failures were logged
    for secret in secrets:
        assert secret not in log
        assert secret[7:] not in log


Headers = dict[str, str]


def exercise(url: str, master: Headers, team: Headers, generated: Headers) -> list[tuple[str, str]]:
    """Successful and failing calls of every kind; returns (what, headers + body) of each answer."""
    seen: list[tuple[str, str]] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        def keep(what: str, r: httpx.Response) -> None:
            seen.append((what, str(r.headers) + r.text))

        prompt = unique()
        for name, auth in (("master", master), ("team", team), ("generated", generated)):
            for model in ("gpt-4o", "fail-500", "fail-429", "fail-400", "down", "nope", "cut-stream"):
                for stream in (False, True):
                    try:
                        body = chat(prompt, model=model, stream=stream)
                        r = client.post("/chat/completions", json=body, headers=auth)
                    except httpx.RemoteProtocolError:
                        continue  # cut-stream: the cut is passed on
                    keep(f"{name} chat {model} stream={stream}", r)
            keep(f"{name} embeddings", client.post("/embeddings", json={"model": "text-embedding-3-small",
                                                                          "input": prompt}, headers=auth))
            keep(f"{name} bad json", client.post("/chat/completions", content=b"{", headers=auth))
            keep(f"{name} models", client.get("/v1/models", headers=auth))
            keep(f"{name} key list", client.get("/key/list", headers=auth))
        for bad in (f"Bearer {MASTER_KEY}x", f"Bearer {TEAM_KEY[:-1]}", MASTER_KEY, f"Basic {TEAM_KEY}"):
            keep("wrong key", client.post("/chat/completions", json=chat(prompt), headers={"Authorization": bad}))
        for path in ("/health/readiness", "/health", "/livez", "/openapi.json"):
            keep(path, client.get(path))
        keep("delete", client.post("/key/delete", json={"keys": ["sk-nope"]}, headers=master))
    return seen
