"""``reprise serve --workers 2``: ``/metrics`` and ``/cache/stats`` count the whole machine (issue 15 item 1).

Before, each worker counted only what it served and a scrape got whichever worker took the
connection. Requests here go to both workers on connections pinned by pid; scrapes go on fresh
connections (either worker may answer) and on the pinned ones (each worker answers for sure).
Workers publish every second, so a scrape is polled until it counts everything; every scrape
on the way must never count less than the one before.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.server.conftest import (
    AUTH,
    GatewayProcess,
    chat,
    close_clients,
    gateway_config,
    pinned_clients,
    unique,
)
from tests.support.stub_upstream import StubUpstream

WORKERS = 2
_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")
_COUNTERS = ("reprise_requests_total", "reprise_cache_hits_total", "reprise_cache_misses_total",
             "reprise_cache_hit_latency_seconds_count", "reprise_upstream_latency_seconds_count",
             "reprise_cache_upstream_calls_total", "reprise_cache_stores_total")


def metric_sums(text: str) -> dict[str, float]:
    """Each metric's value summed over its label sets (histograms: ``_count`` and ``_sum``)."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and "le=" not in (match.group(2) or ""):
            sums[match.group(1)] = sums.get(match.group(1), 0.0) + float(match.group(3))
    return sums


def label_sets(text: str, name: str) -> set[str]:
    return {m.group(2) or "" for line in text.splitlines() if (m := _SAMPLE.match(line)) and m.group(1) == name}


async def send_spread(by_pid: dict[int, list[httpx.AsyncClient]]) -> Counter[str]:
    """Misses and hits through both workers (hits of answers stored through the other one too);
    what the gateway said it did, by ``x-reprise-cache``."""
    (one,), (other,) = by_pid.values()
    seen: Counter[str] = Counter()
    prompts = [unique(f"machine-wide {i}") for i in range(3)]
    for client, prompt in ((one, prompts[0]), (other, prompts[1]), (one, prompts[2])):
        answer = await client.post("/chat/completions", json=chat(prompt))
        seen[answer.headers["x-reprise-cache"]] += 1
    for client in (one, other, other, one, other):
        for prompt in prompts:
            answer = await client.post("/chat/completions", json=chat(prompt))
            assert answer.status_code == 200
            seen[answer.headers["x-reprise-cache"]] += 1
    assert seen == {"miss": 3, "hit": 15}, seen
    return seen


class Scrapes:
    """Scrapes of one gateway, each checked never to count less than any before it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.highest: dict[str, float] = {}
        self.answered_by: set[int] = set()

    def _check(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            assert value >= self.highest.get(name, 0.0), (name, value, self.highest)
            self.highest[name] = value

    async def _get(self, client: httpx.AsyncClient | None, path: str) -> httpx.Response:
        if client is not None:
            return await client.get(path)
        for attempt in range(5):  # a fresh connection: whichever worker accepts it answers
            try:
                async with httpx.AsyncClient(base_url=self.url, headers=AUTH, timeout=20) as fresh:
                    return await fresh.get(path)
            except httpx.TransportError:  # accepted by a worker as it was exiting: ask again
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def stats(self, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
        answer = await self._get(client, "/cache/stats")
        assert answer.status_code == 200
        view: dict[str, Any] = answer.json()
        self.answered_by.add(view["process"]["pid"])
        totals = view["totals"]
        self._check({f"stats.{k}": float(totals[k]) for k in ("requests", "hits", "misses")}
                    | {f"stats.driver.{k}": float(v) for k, v in view["driver"].items()})
        return view

    async def metrics(self, client: httpx.AsyncClient | None = None) -> tuple[dict[str, float], str]:
        answer = await self._get(client, "/metrics")
        assert answer.status_code == 200
        sums = metric_sums(answer.text)
        self._check({name: sums.get(name, 0.0) for name in _COUNTERS})
        return sums, answer.text

    async def until_counted(self, requests: int, deadline_s: float = 30.0) -> None:
        """Scrape (alternating routes, fresh connections) until both count ``requests``."""
        deadline = time.monotonic() + deadline_s
        while True:
            view = await self.stats()
            sums, _ = await self.metrics()
            if view["totals"]["requests"] == requests and sums.get("reprise_requests_total") == requests:
                return
            assert time.monotonic() < deadline, (view["totals"], view["workers"], sums)
            await asyncio.sleep(0.05)


def test_every_scrape_counts_the_requests_of_both_workers(two_workers: GatewayProcess,
                                                          upstream: StubUpstream) -> None:
    async def run() -> None:
        scrapes = Scrapes(two_workers.url)
        by_pid = await pinned_clients(two_workers.url, WORKERS, 1)
        try:
            seen = await send_spread(by_pid)
            total = sum(seen.values())
            await scrapes.until_counted(total)
            assert upstream.calls()["chat"] == seen["miss"]
            pinned = [client for clients in by_pid.values() for client in clients]
            for client in [*pinned, None, None, None, *pinned]:  # each worker answers, some scrapes either
                view = await scrapes.stats(client)
                totals = view["totals"]
                assert (totals["requests"], totals["hits"], totals["misses"]) == (total, seen["hit"], seen["miss"])
                assert view["driver"]["upstream_calls"] == seen["miss"] and view["driver"]["stores"] == seen["miss"]
                assert sum(row["requests"] for row in view["models"]) == total
                assert view["workers"]["running"] == WORKERS and view["workers"]["exited"] == 0
                assert sorted(view["workers"]["pids"]) == sorted(by_pid)
                assert view["workers"]["publish_interval_s"] == 1.0
                assert view["workers"]["snapshot_age_s"] >= 0
                assert sum(row["hits"] for row in view["top"]) == seen["hit"]  # 3 keys hit on both workers
                sums, _ = await scrapes.metrics(client)
                assert sums["reprise_requests_total"] == total
                assert sums["reprise_cache_hits_total"] == seen["hit"]
                assert sums["reprise_cache_hit_latency_seconds_count"] == seen["hit"]
                assert sums["reprise_cache_misses_total"] == seen["miss"]
                assert sums["reprise_upstream_latency_seconds_count"] == seen["miss"]
                assert sums["reprise_cache_upstream_calls_total"] == seen["miss"]
                assert sums["reprise_workers"] == WORKERS
            assert scrapes.answered_by == set(by_pid)
            history = await pinned[0].get("/cache/stats", params={"series": "1", "span": "600"})
            assert sum(bucket["requests"] for bucket in history.json()["series"]) == total
        finally:
            await close_clients(by_pid)

    asyncio.run(run())


def test_a_worker_that_exits_leaves_its_counts(two_workers: GatewayProcess, upstream: StubUpstream) -> None:
    async def run() -> None:
        scrapes = Scrapes(two_workers.url)
        by_pid = await pinned_clients(two_workers.url, WORKERS, 1)
        try:
            total = sum((await send_spread(by_pid)).values())
            await scrapes.until_counted(total)
        finally:
            await close_clients(by_pid)
        leaving = min(by_pid)
        os.kill(leaving, signal.SIGTERM)  # a graceful exit: uvicorn's supervisor starts a new worker
        deadline = time.monotonic() + 30
        while True:
            view = await scrapes.stats()  # each scrape counts everything, before, during and after
            assert view["totals"]["requests"] == total
            sums, _ = await scrapes.metrics()
            assert sums["reprise_requests_total"] == total
            if view["workers"]["exited"] == 1 and leaving not in view["workers"]["pids"]:
                break
            assert time.monotonic() < deadline, view["workers"]
            await asyncio.sleep(0.05)
        assert view["workers"]["running"] in (1, 2)  # the new worker may still be starting

    asyncio.run(run())


def test_labels_stay_bounded_across_workers(two_workers: GatewayProcess, upstream: StubUpstream) -> None:
    """Model names not in the config are ``_other`` on every worker, so in the merged scrape too."""
    async def run() -> None:
        scrapes = Scrapes(two_workers.url)
        by_pid = await pinned_clients(two_workers.url, WORKERS, 1)
        try:
            sent = 0
            for i, client in enumerate(client for clients in by_pid.values() for client in clients for _ in range(3)):
                answer = await client.post("/chat/completions", json=chat(unique("x"), model=f"made-up-{i}"))
                assert answer.status_code >= 400
                sent += 1
            await scrapes.until_counted(sent)
        finally:
            await close_clients(by_pid)
        _, text = await scrapes.metrics()
        assert label_sets(text, "reprise_requests_total") <= {
            f'{{model="{name}",namespace=""}}' for name in ("_other", *_configured_models())}
        assert '{model="_other",namespace=""}' in label_sets(text, "reprise_requests_total")

    asyncio.run(run())


def _configured_models() -> list[str]:
    return [model["model_name"] for model in gateway_config("http://x")["model_list"]]


def test_one_worker_answers_for_itself_and_writes_nothing(make_gateway: Any, upstream: StubUpstream) -> None:
    gw: GatewayProcess = make_gateway()
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as client:
        assert client.post("/chat/completions", json=chat(unique("alone"))).status_code == 200
        view = client.get("/cache/stats").json()
        assert view["totals"]["requests"] == 1
        assert view["workers"] == {"running": 1, "exited": 0, "pids": [view["process"]["pid"]],
                                   "started_at": view["process"]["started_at"], "snapshot_age_s": 0.0,
                                   "publish_interval_s": None}
        sums = metric_sums(client.get("/metrics").text)
        assert sums["reprise_workers"] == 1 and sums["reprise_requests_total"] == 1
        assert sums["reprise_metrics_snapshot_age_seconds"] == 0
    assert gw.proc is not None  # with one worker the server is the worker: no directory of its own anywhere
    roots = [Path("/dev/shm"), Path(tempfile.gettempdir())]
    assert not [p for root in roots for p in root.glob(f"reprise-workers-{gw.proc.pid}-*")]
