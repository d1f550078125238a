"""Faults around a real gateway: the provider unreachable, killed and restarted; the gateway
itself killed with SIGKILL while its disk store is being written.

(Upstream 5xx/429, timeouts, cut and malformed streams and client aborts are in
test_chat_cache.py and test_streaming.py.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from reprise.backends.disk import FILENAME
from tests.server.conftest import AUTH, GatewayProcess, chat, free_port, gateway_config, unique
from tests.support.stub_upstream import StubUpstream


def test_unreachable_upstream_is_a_502_and_nothing_is_cached(make_gateway: Callable[..., GatewayProcess]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    gw = make_gateway(gateway_config(closed))
    body = chat(unique())
    for extra in ({}, {"stream": True}, {}):
        r = httpx.post(gw.url + "/chat/completions", json={**body, **extra}, headers=AUTH, timeout=10)
        assert r.status_code == 502, r.text
        assert r.json()["error"]["type"] == "upstream_error"
        assert r.headers["x-reprise-cache"] == "miss"  # on every answer, errors too
        assert r.headers["x-litellm-cache-key"]
    r = httpx.post(gw.url + "/chat/completions", json={**body, "cache": {"no-cache": True}}, headers=AUTH, timeout=10)
    assert r.status_code == 502 and r.headers["x-reprise-cache"] == "bypass"
    r = httpx.post(gw.url + "/embeddings", json={"model": "text-embedding-3-small", "input": unique()},
                   headers=AUTH, timeout=10)
    assert r.status_code == 502 and "error" in r.json()
    assert httpx.get(gw.url + "/health/readiness").status_code == 200


def test_upstream_killed_mid_request_then_restarted(make_gateway: Callable[..., GatewayProcess]) -> None:
    with StubUpstream() as own:
        gw = make_gateway(gateway_config(own.url))
        own.set_delay(3000)
        body = chat(unique())
        result: dict[str, httpx.Response] = {}
        thread = threading.Thread(target=lambda: result.update(
            r=httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH, timeout=15)))
        thread.start()
        time.sleep(0.5)
        assert own.pid is not None
        os.kill(own.pid, signal.SIGKILL)  # the provider dies with the request in flight
        thread.join(timeout=15)
        assert result["r"].status_code == 502, result["r"].text
        own.stop()
        # while the provider is down: 502s, quickly, for plain and streamed requests
        for extra in ({}, {"stream": True}):
            assert httpx.post(gw.url + "/chat/completions", json={**body, **extra}, headers=AUTH,
                              timeout=10).status_code == 502
        own.start()  # same port
        own.set_delay(0)
        first = httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH, timeout=10)
        assert first.status_code == 200 and first.headers["x-reprise-cache"] == "miss"
        again = httpx.post(gw.url + "/chat/completions", json=body, headers=AUTH, timeout=10)
        assert again.headers["x-reprise-cache"] == "hit"
        assert again.json()["choices"] == first.json()["choices"]
        assert own.calls()["chat"] == 1


def _load(url: str, prompts: list[str], answers: dict[str, str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
        for prompt in prompts:
            if stop.is_set():
                return
            try:
                r = client.post("/chat/completions", json=chat(prompt, stream=len(prompt) % 2 == 0))
            except httpx.TransportError:
                return  # the gateway was killed
            if r.status_code == 200:
                answers[prompt] = r.text


@pytest.mark.parametrize("round_", range(2))
def test_gateway_killed_mid_write_keeps_a_sound_store(make_gateway: Callable[..., GatewayProcess],
                                                      stub: StubUpstream, tmp_path: Path, round_: int) -> None:
    cache_dir = tmp_path / f"disk-{round_}"
    config = gateway_config(stub.url, {"type": "disk", "disk_cache_dir": str(cache_dir)})
    gw = make_gateway(config)
    stub.set_delay(0)
    answers: dict[str, str] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(gw.url, [unique(f"k{t}-{i}") for i in range(2000)], answers, stop))
               for t in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.8 + 0.4 * round_)
    gw.stop(signal.SIGKILL)  # while four clients keep writing entries
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert len(answers) > 20, "too little load before the kill"

    db = sqlite3.connect(cache_dir / FILENAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    again = make_gateway(config)
    stub.reset()
    with httpx.Client(base_url=again.url, headers=AUTH, timeout=10) as client:
        early = sorted(answers)[:30]
        replies = [client.post("/chat/completions", json=chat(p)) for p in early]
    assert all(r.status_code == 200 for r in replies)
    hits = [r for r in replies if r.headers["x-reprise-cache"] == "hit"]
    assert hits, "nothing answered before the kill was served from the restarted store"
    for prompt, reply in zip(early, replies, strict=True):
        assert reply.json()["choices"][0]["message"]["content"].startswith(f"echo: {prompt} #")
