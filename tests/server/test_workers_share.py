"""``reprise serve --workers 2``: one cache for the machine (issue 15 item 1).

Before, each worker had its own ``local`` cache: an answer stored through one worker was a
miss on the other, and identical concurrent misses cost one upstream call per worker.
Each test pins its requests to a worker by keeping an HTTP connection open to it (a kept-alive
connection stays with the worker that accepted it; ``/cache/stats`` names that worker's pid).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from reprise.backends.machine import WORKERS_DIR_ENV, shared_tier_directory
from tests.server.conftest import (
    AUTH,
    GatewayProcess,
    chat,
    close_clients,
    pinned_clients,
    unique,
)
from tests.support.stub_upstream import StubUpstream

WORKERS = 2


def test_an_answer_stored_through_one_worker_is_a_hit_on_the_other(two_workers: GatewayProcess,
                                                                 upstream: StubUpstream) -> None:
    async def run() -> None:
        by_pid = await pinned_clients(two_workers.url, WORKERS, 1)
        (one,), (other,) = by_pid.values()
        try:
            for stream in (False, True):
                body = chat(unique("shared across workers"), stream=stream)
                first = await one.post("/chat/completions", json=body)
                assert first.status_code == 200 and first.headers["x-reprise-cache"] == "miss"
                second = await other.post("/chat/completions", json=body)
                assert second.status_code == 200 and second.headers["x-reprise-cache"] == "hit"
                assert second.headers["x-litellm-cache-key"] == first.headers["x-litellm-cache-key"]
                if not stream:
                    assert second.json() == first.json()
                back = await one.post("/chat/completions", json=body)
                assert back.headers["x-reprise-cache"] == "hit"
            assert upstream.calls()["chat"] == 2
            pids = {(await c.get("/cache/stats")).json()["process"]["pid"] for c in (one, other)}
            assert len(pids) == 2  # the two answers really came from two processes
        finally:
            await close_clients(by_pid)

    asyncio.run(run())


def test_identical_concurrent_misses_on_both_workers_cost_one_upstream_call(two_workers: GatewayProcess,
                                                                           upstream: StubUpstream) -> None:
    upstream.set_delay(500)  # the first call is still in flight when every request has arrived

    async def run() -> None:
        by_pid = await pinned_clients(two_workers.url, WORKERS, 4)
        try:
            body = chat(unique("eight at once"))
            clients = [c for group in by_pid.values() for c in group]
            answers = await asyncio.gather(*(c.post("/chat/completions", json=body) for c in clients))
            assert [a.status_code for a in answers] == [200] * len(clients)
            assert len({a.json()["id"] for a in answers}) == 1  # one answer, shared by all
            assert upstream.calls()["chat"] == 1
            again = await asyncio.gather(*(c.post("/chat/completions", json=body) for c in clients))
            assert {a.headers["x-reprise-cache"] for a in again} == {"hit"}
            assert upstream.calls()["chat"] == 1
        finally:
            await close_clients(by_pid)

    asyncio.run(run())


def test_the_shared_tier_lives_in_a_private_directory_removed_at_exit(two_workers: GatewayProcess) -> None:
    with httpx.Client(base_url=two_workers.url, headers=AUTH) as client:
        ping = client.get("/cache/ping").json()
        assert ping["cache_type"] == "local" and ping["capabilities"]["shared"] is True
    proc = two_workers.proc
    assert proc is not None
    environ = Path(f"/proc/{proc.pid}/environ")
    shared = None
    if environ.exists():  # the supervisor's own environment has no such variable: read its children's
        for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
            pairs = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            for pair in pairs:
                if pair.startswith(WORKERS_DIR_ENV.encode() + b"="):
                    shared = Path(pair.split(b"=", 1)[1].decode())
    assert shared is not None and shared.is_dir()
    two_workers.stop()
    assert not shared.exists()


def test_the_shared_tier_leaves_dev_shm_when_it_has_no_room_for_max_bytes() -> None:
    """Found from outside: a container's /dev/shm is 64 MB by default and ``local`` is bounded at 256 MiB:
    the tier filled it and stopped storing. It goes to the temporary directory instead."""
    if not os.access("/dev/shm", os.W_OK):
        pytest.fail("this test needs a writable /dev/shm (Linux)")
    with shared_tier_directory(need_bytes=0) as roomy:
        assert roomy.parent == Path("/dev/shm")
    too_big = shutil.disk_usage("/dev/shm").free + 2**30
    with shared_tier_directory(need_bytes=too_big) as elsewhere:
        assert elsewhere.parent == Path(tempfile.gettempdir()) and elsewhere.is_dir()
    assert not elsewhere.exists()
