"""Real processes for end-to-end tests: the stub provider and a ``reprise serve`` gateway.

Both run as separate processes on free loopback ports and are spoken to over HTTP,
exactly as a user's app would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.stub_upstream import StubUpstream

MASTER_KEY = "sk-test-master-key"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """``reprise serve`` in a subprocess; ``url`` is its base, ``log`` its stderr so far."""

    def __init__(self, config: dict[str, Any], workdir: Path, extra_args: list[str] | None = None) -> None:
        self.config_path = workdir / f"config-{id(self)}.yaml"
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True))
        self.log_path = workdir / f"gateway-{id(self)}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> GatewayProcess:
        cmd = [sys.executable, "-m", "reprise.cli.main", "serve", "--config", str(self.config_path),
               "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args]
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(self.url + "/health/readiness", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"gateway not ready in {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_lines(self, count: int, timeout: float = 5.0) -> list[str]:
        """The request-log lines, once at least ``count`` are written (the log batches lines up to 50 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log.splitlines() if "reprise.access" in line]
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def gateway_config(stub_url: str, cache_params: dict[str, Any] | None = None,
                   **general: Any) -> dict[str, Any]:
    models = [
        {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_base": stub_url,
                                                "api_key": "sk-upstream", "timeout": 3}}
        for name in ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "fail-500", "fail-429",
                     "fail-400", "slow", "cut-stream", "bad-sse", "no-done", "reasoning", "function-call",
                     "reject-stream-options", "invalid-json", "stall", "slow-stream",
                     "unfinished", "error-field", "dup-index", "bad-vectors", "vendor-fields",
                     "vendor-fields-oversized")
    ]
    models.append({"model_name": "mock", "litellm_params": {"model": "openai/mock",
                                                            "mock_response": "mocked!"}})
    return {
        "model_list": models,
        "general_settings": {"master_key": MASTER_KEY, **general},
        "litellm_settings": {"cache": True, "cache_params": cache_params or {"type": "local", "ttl": 600}},
    }


@pytest.fixture(scope="session")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as upstream:
        yield upstream


@pytest.fixture()
def upstream(stub: StubUpstream) -> StubUpstream:
    stub.reset()
    stub.set_delay(0)
    return stub


@pytest.fixture(scope="session")
def shared_gateway(stub: StubUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(gateway_config(stub.url), tmp_path_factory.mktemp("gw")).start()
    yield gw
    gw.stop()


@pytest.fixture()
def gateway(shared_gateway: GatewayProcess, upstream: StubUpstream) -> GatewayProcess:
    """The session's gateway with a zeroed upstream; tests use unique prompts to stay apart."""
    return shared_gateway


@pytest.fixture()
def make_gateway(stub: StubUpstream, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> GatewayProcess:
        gw = GatewayProcess(config or gateway_config(stub.url, **kwargs), tmp_path).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture()
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=10) as c:
        yield c


def unique(text: str = "hello") -> str:
    """A prompt no other test uses, so tests sharing a gateway never see each other's entries."""
    return f"{text} {time.monotonic_ns()}"


def chat(content: str, model: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


async def pinned_clients(url: str, workers: int, per_worker: int) -> dict[int, list[httpx.AsyncClient]]:
    """``per_worker`` open connections to each of ``workers`` workers, by pid (fresh connections until each has them).

    A kept-alive connection stays with the worker that accepted it; ``/cache/stats`` names that worker's pid.
    """
    by_pid: dict[int, list[httpx.AsyncClient]] = {}
    spare: list[httpx.AsyncClient] = []
    for _ in range(200):
        if len(by_pid) == workers and all(len(c) >= per_worker for c in by_pid.values()):
            break
        client = httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20,
                                   limits=httpx.Limits(max_connections=1))
        pid = (await client.get("/cache/stats")).json()["process"]["pid"]
        group = by_pid.setdefault(pid, [])
        (group if len(group) < per_worker else spare).append(client)
    for client in spare:
        await client.aclose()
    assert len(by_pid) == workers and all(len(c) >= per_worker for c in by_pid.values()), \
        "could not reach both workers"
    return by_pid


async def close_clients(by_pid: dict[int, list[httpx.AsyncClient]]) -> None:
    for clients in by_pid.values():
        for client in clients:
            await client.aclose()


@pytest.fixture()
def two_workers(stub: StubUpstream, upstream: StubUpstream, tmp_path: Path) -> Iterator[GatewayProcess]:
    """``reprise serve --workers 2`` with a ``local`` cache, once both workers have started."""
    config = gateway_config(stub.url, {"type": "local", "ttl": 600})
    gw = GatewayProcess(config, tmp_path, extra_args=["--workers", "2"]).start(timeout=30)
    deadline = time.monotonic() + 30
    while gw.log.count("Application startup complete") < 2:
        assert time.monotonic() < deadline, gw.log
        time.sleep(0.05)
    yield gw
    gw.stop()


def ask_with_system(client: httpx.Client, system: str, text: str, **extra: Any) -> httpx.Response:
    """A chat request of one system and one user message; a non-200 answer fails the test.

    The semantic tests' question: the system prompt keeps each test's scope apart."""
    r = client.post("/chat/completions", json={"model": "gpt-4o", "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": text}], **extra})
    assert r.status_code == 200, r.text
    return r
