"""Starting, watching and always stopping the servers a benchmark run needs.

Why process groups: a server may fork (uvicorn workers, LiteLLM's helpers). Each
one is started in its own session, so killing its group kills everything it
started, and nothing is left listening after the run, even on Ctrl-C.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now; the small race before the server binds it is fine here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One started server: its process, where it listens, how long it took to be ready."""

    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    spawned_at: float  # time.perf_counter() just before the spawn
    startup_s: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ProcessSet:
    """Every process of a run; ``close()`` kills them all (use it in ``finally``)."""

    log_dir: Path
    servers: list[Server] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        host: str = "127.0.0.1",
    ) -> Server:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:  # the child keeps its own copy of the fd
            spawned_at = time.perf_counter()
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        server = Server(name, proc, host, port, log_path, spawned_at)
        self.servers.append(server)
        return server

    def close(self) -> None:
        for server in reversed(self.servers):
            kill_group(server.proc)
        self.servers.clear()


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL whatever is left.

    The SIGKILL is sent even when the leader exited, for children it left behind.
    """
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_ready(
    server: Server,
    probes: Sequence[tuple[str, Mapping[str, str]]],
    timeout: float = 60.0,
    interval: float = 0.005,
) -> float:
    """Poll until a probe answers 2xx; set and return ``startup_s`` (spawn to first success).

    ``probes`` are ``(path, headers)`` tried in order; a 404 on one moves on to the
    next (``/health/readiness`` first, ``/v1/models`` as a fallback), anything else
    is retried until ``timeout``.
    """
    deadline = server.spawned_at + timeout
    index = 0
    while time.perf_counter() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.proc.returncode} before it was ready:\n{server.log_tail()}"
            )
        path, headers = probes[index]
        status = _probe(server.host, server.port, path, headers)
        if status is not None and 200 <= status < 300:
            server.startup_s = time.perf_counter() - server.spawned_at
            return server.startup_s
        if status == 404 and index + 1 < len(probes):
            index += 1
            continue
        time.sleep(interval)
    raise TimeoutError(f"{server.name} not ready after {timeout} s:\n{server.log_tail()}")


def _probe(host: str, port: int, path: str, headers: Mapping[str, str]) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", path, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants (VmRSS from /proc), in MB."""
    total_kb = 0
    for member in _descendants(pid) | {pid}:
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
