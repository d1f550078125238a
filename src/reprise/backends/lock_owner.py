"""Who holds a lock in a shared SQLite file, and whether that process is gone.

The ``locks`` table of :mod:`reprise.backends.disk` elects one producer per key among
the processes sharing the file (``reprise serve --workers N``). A worker killed while it
holds a lock (``kill -9``, the OOM killer) never releases it, and the identical request
waiting on another worker used to poll until ``lock_timeout`` (10 s) ran out. So the
owner column names the process: a token of the machine's boot, the pid namespace, the
pid and the process's start time, plus a random part per store. A waiter that finds the
lock held by a process of its own machine and pid namespace that no longer runs (no such
pid, a zombie, or the pid reused by a process started later) takes the lock at once.

The check says "gone" only when it is sure: an owner on another machine or in another
container (a directory shared over a volume), a token written by an older version, or a
system without ``/proc`` is treated as alive, and its lock lasts until ``lock_timeout``
as before. All of it is Linux ``/proc``; elsewhere nothing changes.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

_PROC = Path("/proc")


def owner_token() -> str:
    """A new owner name for one store in this process (reads ``/proc``: not on the event loop)."""
    place = _place()
    start = _start_time(os.getpid())
    if place is None or start is None:
        return uuid.uuid4().hex  # nothing to check it by: it ages out as before
    return "/".join((*place, str(os.getpid()), start, uuid.uuid4().hex))


def owner_gone(token: str) -> bool:
    """True when the process that wrote ``token`` surely runs no more."""
    parts = token.split("/")
    if len(parts) != 5 or not parts[2].isdigit():
        return False
    boot, namespace, pid_text, start, _ = parts
    if _place() != (boot, namespace):
        return False  # another machine, boot or container: its pids are not ours to look at
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    return _start_time(pid) != start  # None: no such process (or a zombie); else the pid was reused


@functools.cache
def _place() -> tuple[str, str] | None:
    """(boot id, pid namespace) of this process, or None without a readable ``/proc``: read once,
    since neither changes while the process lives (waiters check owners on every poll)."""
    try:
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(_PROC / "self/ns/pid")
    except OSError:
        return None
    if not boot or "/" in boot or "/" in namespace:
        return None
    return boot, namespace


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of proc(5), counted from the state (field 3)
