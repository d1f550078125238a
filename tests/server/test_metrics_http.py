"""``/metrics``, ``/cache/stats``, savings headers and the request log, driven by real traffic."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')


def scrape(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(url + "/metrics", headers=headers or AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_counters_move_with_hits_and_misses_and_money_is_saved(client: httpx.Client, gateway: GatewayProcess) -> None:
    before = scrape(gateway.url)
    body = chat(unique("metrics"), model="gpt-4o")
    miss = client.post("/chat/completions", json=body)
    hit = client.post("/chat/completions", json=body)
    assert miss.headers["x-reprise-cache"] == "miss" and hit.headers["x-reprise-cache"] == "hit"
    assert re.fullmatch(r"[0-9a-f]{24}", hit.headers["x-request-id"])
    usage = hit.json()["usage"]
    assert int(hit.headers["x-reprise-saved-tokens"]) == usage["prompt_tokens"] + usage["completion_tokens"]
    expected_usd = usage["prompt_tokens"] * 2.5e-6 + usage["completion_tokens"] * 10e-6
    assert abs(float(hit.headers["x-reprise-saved-usd"]) - expected_usd) < 1e-6
    assert "x-reprise-saved-usd" not in miss.headers
    client.post("/chat/completions", json=chat(unique(), cache={"no-cache": True}))
    client.post("/chat/completions", json=chat(unique(), model="fail-500"))
    after = scrape(gateway.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("reprise_cache_hits_total", model="gpt-4o") == 1
    assert delta("reprise_cache_misses_total", model="gpt-4o") == 1
    assert delta("reprise_cache_bypasses_total", model="gpt-4o") == 1
    assert delta("reprise_requests_total") == 4
    assert delta("reprise_upstream_errors_total", model="fail-500") == 1
    assert delta("reprise_cache_stores_total", backend="local") == 2  # no-cache skips the read, still stores
    assert delta("reprise_cache_saved_usd_total", model="gpt-4o") > 0
    assert abs(delta("reprise_cache_saved_usd_total", model="gpt-4o") - expected_usd) < 1e-9
    assert delta("reprise_cache_saved_tokens_total", kind="completion") == usage["completion_tokens"]
    assert delta("reprise_cache_hit_latency_seconds_count", model="gpt-4o") == 1
    assert 1 <= value(after, "reprise_event_loop_tasks") < 50  # the scrape itself runs in one
    assert delta("reprise_upstream_latency_seconds_count", model="gpt-4o") == 2
    assert value(after, "reprise_cache_hit_latency_seconds_bucket", model="gpt-4o", le="+Inf") >= 1
    assert ("reprise_cache_semantic_hits_total", frozenset({("model", "gpt-4o"), ("namespace", "")})) in after


def test_stats_totals_series_and_top_prompts(client: httpx.Client) -> None:
    prompt = unique("top prompt")
    for _ in range(4):
        client.post("/chat/completions", json=chat(prompt, model="gpt-4o-mini"))
    stats = client.get("/cache/stats", params={"series": 1, "span": 300}).json()
    assert stats["backend"] == "local"
    totals = stats["totals"]
    assert totals["hits"] >= 3 and 0 < totals["hit_rate"] <= 1 and totals["saved_usd"] > 0
    assert totals["hit_latency_ms_avg"] < totals["upstream_latency_ms_avg"]
    assert any(row["model"] == "gpt-4o-mini" and row["hits"] >= 3 for row in stats["models"])
    assert any(prompt == top["preview"] and top["hits"] == 3 for top in stats["top"])
    series = stats["series"]
    assert len(series) == 30 and sum(b["hits"] for b in series) >= 3
    assert series[-1]["start"] - series[0]["start"] == 290
    assert stats["similarity"]["enabled"] is False


def test_embedding_hits_are_counted(client: httpx.Client, gateway: GatewayProcess) -> None:
    before = scrape(gateway.url)
    body = {"model": "text-embedding-3-small", "input": unique("vector")}
    client.post("/embeddings", json=body)
    assert client.post("/embeddings", json=body).headers["x-reprise-cache"] == "hit"
    after = scrape(gateway.url)
    assert value(after, "reprise_cache_hits_total", model="text-embedding-3-small") - value(
        before, "reprise_cache_hits_total", model="text-embedding-3-small") == 1


def test_unknown_models_do_not_create_series(client: httpx.Client, gateway: GatewayProcess) -> None:
    client.post("/chat/completions", json=chat("x", model=unique("no-such-model")))
    names = {dict(labels).get("model") for (_, labels) in scrape(gateway.url)}
    assert not any(n and n.startswith("no-such-model") for n in names)
    assert "_other" in names


def test_metrics_need_the_master_key_by_default(make_gateway: Callable[..., GatewayProcess]) -> None:
    """Found: /metrics was open by default and named tenants and namespaces to anyone."""
    gw = make_gateway()
    assert httpx.get(gw.url + "/metrics").status_code == 401
    assert httpx.get(gw.url + "/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert value(scrape(gw.url, AUTH), "reprise_requests_total") == 0


def test_request_log_lines_hold_ids_but_no_secrets_or_prompts(make_gateway: Callable[..., GatewayProcess]) -> None:
    gw = make_gateway(json_logs=True)
    prompt = "my secret prompt"
    r = httpx.post(gw.url + "/chat/completions", json=chat(prompt), headers={**AUTH, "x-request-id": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    httpx.post(gw.url + "/chat/completions", json=chat(prompt), headers=AUTH)
    lines = [json.loads(line) for line in gw.access_lines(2) if line.startswith('{"ts"')]
    assert [line["cache"] for line in lines] == ["miss", "hit"]
    first = lines[0]
    assert first["request_id"] == "req-42" and first["model"] == "gpt-4o" and first["status"] == 200
    assert first["key"] == r.headers["x-litellm-cache-key"] and first["latency_ms"] > 0
    assert lines[1]["saved_usd"] > 0
    assert prompt not in gw.log and MASTER_KEY not in gw.log and "sk-upstream" not in gw.log


def test_prompts_are_logged_only_when_turned_on(make_gateway: Callable[..., GatewayProcess]) -> None:
    gw = make_gateway(log_prompts=True)
    httpx.post(gw.url + "/chat/completions", json=chat("visible prompt"), headers=AUTH)
    (line,) = gw.access_lines(1)
    assert 'prompt="visible prompt"' in line and "cache=miss" in line and MASTER_KEY not in line


def test_client_namespaces_cannot_blow_up_the_series(make_gateway: Callable[..., GatewayProcess]) -> None:
    """Found: every namespace a client sent became a label (90k namespaces: /metrics 32 MB).
    Now only configured namespaces are named; the rest count as ``_other``."""
    gw = make_gateway(metrics_namespaces=["docs"])
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        for i in range(10_000):
            r = c.post("/chat/completions", json=chat("hi", model="mock", cache={"namespace": f"ns{i}"}))
            assert r.status_code == 200
        c.post("/chat/completions", json=chat("hi", model="mock", cache={"namespace": "docs"}))
    samples = scrape(gw.url)
    namespaces = {dict(labels).get("namespace") for (_, labels) in samples} - {None}
    assert namespaces <= {"", "_other", "docs"}
    assert value(samples, "reprise_requests_total", model="mock", namespace="_other") == 10_000
    assert len(samples) < 200


def test_the_served_gateway_is_frozen_out_of_garbage_collection(client: httpx.Client,
                                                                 gateway: GatewayProcess) -> None:
    """``reprise serve`` freezes the loaded gateway (server/collector.py): collections skip it."""
    for _ in range(20):
        assert client.post("/chat/completions", json=chat(unique("gc"), model="mock")).status_code == 200
    samples = scrape(gateway.url)
    assert value(samples, "reprise_gc_frozen_objects") > 10_000  # config, models, routes, modules
    assert value(samples, "reprise_gc_collections_total", generation="2") >= 1  # the collection before freezing


def test_streamed_hits_keep_their_sse_forms_within_the_local_caches_max_bytes(
        make_gateway: Callable[..., GatewayProcess], stub: StubUpstream) -> None:
    """Was: 256 MiB for every gateway (200 streamed hits of 1 MB answers under ``max_bytes: 4194304``
    grew a worker from 57 to 320 MB), and replays of evicted answers kept them alive."""
    config = gateway_config(stub.url, {"type": "local", "ttl": 600, "max_bytes": 4 * 2**20})
    config["model_list"].append({"model_name": "big", "litellm_params": {"model": "openai/big",
                                                                         "mock_response": "x" * 100_000}})
    gw = make_gateway(config)
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=30) as client:
        for i in range(40):  # 40 answers of 100 KB, their SSE forms ~110 KB each: ~8.4 MB to keep
            body = chat(unique(f"replay {i}"), model="big")
            assert client.post("/chat/completions", json=body).headers["x-reprise-cache"] == "miss"
            streamed = client.post("/chat/completions", json={**body, "stream": True})
            assert streamed.headers["x-reprise-cache"] == "hit" and streamed.content.endswith(b"data: [DONE]\n\n")
    held = value(scrape(gw.url), "reprise_replay_memo_bytes")
    assert 2_000_000 < held <= 4 * 2**20  # replays kept, never more than max_bytes (was ~8.4 MB here)
