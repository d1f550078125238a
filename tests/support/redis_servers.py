"""Real Redis processes for tests: standalone (with or without a password), cluster, sentinel.

Every server is a ``redis-server`` child on a free loopback port, in a temporary
directory, without persistence, killed with its process group at the end. The
fixtures are session-scoped where the server is shared (tests flush or use unique
keys) and function-scoped where a test kills or fails one over. When the binary
is missing they fail with the command that installs it.

``tests/conftest.py`` registers this module as a plugin, so every test can ask for
these fixtures by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "redis-server/redis-cli not found: install them with `apt-get install -y redis-server`"
PASSWORD = "s3cret-redis"
SERVICE = "mymaster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def require_binaries() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail(INSTALL_HINT)


def redis_cli(port: int, *args: str, password: str | None = None, timeout: float = 10) -> str:
    """Run one redis-cli command against ``127.0.0.1:port``; its stdout, stripped."""
    cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--no-auth-warning"]
    if password:
        cmd += ["-a", password]
    result = subprocess.run([*cmd, *args], capture_output=True, timeout=timeout, check=False)
    return result.stdout.decode(errors="replace").strip()


def _answers(port: int) -> bool:
    """True once the port speaks RESP (any reply to PING, even -NOAUTH)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def wait_until(check: object, timeout: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class RedisServer:
    """One ``redis-server`` (or sentinel) process; ``start`` again after ``kill`` reuses the port."""

    binary = "redis-server"

    def __init__(self, workdir: Path, *args: str, port: int | None = None, password: str | None = None,
                 sentinel_conf: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.sentinel_conf = sentinel_conf
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            conf.write_text(self.sentinel_conf)
            cmd = ["redis-server", str(conf), "--sentinel"]
        else:
            cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.dir), *self.args]
            if self.password:
                cmd += ["--requirepass", self.password]
        with open(self.dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.dir)
        try:
            wait_until(lambda: _answers(self.port), timeout, f"redis on port {self.port}")
        except TimeoutError:
            self.kill()
            log = (self.dir / "server.log").read_text(errors="replace")[-2000:]
            raise TimeoutError(f"redis on port {self.port} did not start:\n{log}") from None
        return self

    def cli(self, *args: str) -> str:
        return redis_cli(self.port, *args, password=self.password)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class RedisCluster:
    """Three masters, no replicas, slots spread by ``redis-cli --cluster create``."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [
            RedisServer(workdir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", "2000", port=free_cluster_port())
            for _ in range(3)
        ]

    @property
    def startup_nodes(self) -> list[dict[str, object]]:
        return [{"host": "127.0.0.1", "port": node.port} for node in self.nodes]

    def start(self) -> RedisCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
                        "--cluster-yes"], capture_output=True, timeout=30, check=True)
        wait_until(lambda: all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in self.nodes),
                   20, "cluster_state:ok")

    def flush(self) -> None:
        for node in self.nodes:
            node.cli("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class SentinelSet:
    """A master, one replica and three sentinels watching ``mymaster`` (quorum 2)."""

    def __init__(self, workdir: Path) -> None:
        self.master = RedisServer(workdir)
        self.replica = RedisServer(workdir, "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinels = []
        for _ in range(3):
            port = free_port()
            conf = (f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                    f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
                    f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                    f"sentinel failover-timeout {SERVICE} 5000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n")
            self.sentinels.append(RedisServer(workdir, port=port, sentinel_conf=conf))

    @property
    def sentinel_nodes(self) -> list[list[object]]:
        return [["127.0.0.1", s.port] for s in self.sentinels]

    def master_port(self) -> int:
        reply = self.sentinels[0].cli("SENTINEL", "get-master-addr-by-name", SERVICE).split()
        return int(reply[1]) if len(reply) == 2 else -1

    def start(self) -> SentinelSet:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.master.start()
        self.replica.start()
        wait_until(lambda: "master_link_status:up" in self.replica.cli("INFO", "replication"), 20,
                   "replica in sync")
        for sentinel in self.sentinels:
            sentinel.start()

        def ready() -> bool:
            info = [s.cli("SENTINEL", "master", SERVICE) for s in self.sentinels]
            return all(_field(text, "num-slaves") == "1" and _field(text, "num-other-sentinels") == "2"
                       for text in info)

        wait_until(ready, 30, "sentinels to see the replica and each other")

    def failover(self) -> int:
        """Promote the replica through a sentinel; the new master's port once all agree."""
        old = self.master_port()
        self.sentinels[0].cli("SENTINEL", "FAILOVER", SERVICE)
        wait_until(lambda: self.master_port() not in (old, -1), 30, "sentinel failover")
        new = self.master_port()
        promoted, demoted = (self.replica, self.master) if new == self.replica.port else (self.master, self.replica)
        wait_until(lambda: "role:master" in promoted.cli("INFO", "replication"), 20, "promotion")
        # Until the old master is told to replicate, clients still connected to it write there.
        wait_until(lambda: "role:slave" in demoted.cli("INFO", "replication"), 20, "demotion")
        return new

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.kill()


def _field(flat: str, name: str) -> str | None:
    lines = flat.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line == name:
            return lines[i + 1]
    return None


@pytest.fixture(scope="session")
def redis_workdir() -> Iterator[Path]:
    require_binaries()
    with tempfile.TemporaryDirectory(prefix="reprise-redis-") as path:
        yield Path(path)


@pytest.fixture(scope="session")
def redis_server(redis_workdir: Path) -> Iterator[RedisServer]:
    """A standalone Redis without a password, shared by the session."""
    server = RedisServer(redis_workdir).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_password_server(redis_workdir: Path) -> Iterator[RedisServer]:
    """A standalone Redis with ``requirepass`` (:data:`PASSWORD`)."""
    server = RedisServer(redis_workdir, password=PASSWORD).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_cluster(redis_workdir: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(redis_workdir).start()
    yield cluster
    cluster.stop()


@pytest.fixture()
def redis_sentinels(redis_workdir: Path) -> Iterator[SentinelSet]:
    """Function-scoped: the test fails it over."""
    group = SentinelSet(redis_workdir).start()
    yield group
    group.stop()


@pytest.fixture()
def killable_redis(redis_workdir: Path) -> Iterator[RedisServer]:
    """Function-scoped: the test may kill and restart it (same port)."""
    server = RedisServer(redis_workdir).start()
    yield server
    server.kill()
