"""Each deployment has its own bounded share of upstream connections, and waiting for one is bounded.

Found: one pool of 512 connections for everyone, streams waiting for a slot without a
timeout; one tenant's open streams made another model's requests wait or fail. Now a
deployment holds at most ``max_parallel_requests`` calls (LiteLLM's key; default 128), a
call waits at most ``upstream_queue_timeout`` for one (503 ``upstream_busy``), and other
deployments are not affected.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream


def test_a_busy_deployment_answers_503_and_others_keep_working(stub: StubUpstream, tmp_path: Path) -> None:
    config = gateway_config(stub.url)
    for model in config["model_list"]:
        if model["model_name"] == "slow":
            model["litellm_params"]["max_parallel_requests"] = 2
    config["litellm_settings"]["upstream_queue_timeout"] = 0.5
    gw = GatewayProcess(config, tmp_path).start()
    try:
        held: list[int] = []

        def hold() -> None:  # the stub answers "slow" after 5 s; the gateway gives up at 3 s (504)
            with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
                held.append(c.post("/chat/completions", json=chat(unique(), model="slow")).status_code)

        holders = [threading.Thread(target=hold) for _ in range(2)]
        for t in holders:
            t.start()
        time.sleep(0.5)  # both slots taken
        with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
            busy = c.post("/chat/completions", json=chat(unique(), model="slow"))
            other = c.post("/chat/completions", json=chat(unique(), model="gpt-4o"))
        for t in holders:
            t.join()
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "upstream_busy"
        assert busy.json()["error"]["message"].startswith("model 'slow': all 2 provider connections")
        assert other.status_code == 200
        assert held == [504, 504]
    finally:
        gw.stop()
