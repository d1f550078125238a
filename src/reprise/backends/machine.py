"""One ``local`` cache per machine, however many workers ``reprise serve --workers N`` starts.

Each uvicorn worker is its own process, so an in-process store would be N caches: a hit
stored through one worker was a miss on the next (every round, measured), N identical
concurrent misses cost N upstream calls, and the cache's memory grew N-fold (issue 15).

The design: an in-process L1 over a shared on-machine L2.

* **L2, shared**: a :class:`~reprise.backends.disk.DiskBackend` (SQLite, WAL) in a directory
  the supervisor creates for this server, on ``/dev/shm`` (tmpfs: memory, no disk I/O,
  no fsync) when it exists. Every worker reads and writes it; its bytes exist once on the
  machine (page cache, mapped into each worker), bounded by ``max_bytes``. Its ``locks``
  table elects one producer per key across the workers, so the driver's cross-process
  single-flight (:mod:`reprise.peer_lock`) makes N identical misses one upstream call.
* **L1, per worker**: a small :class:`~reprise.backends.memory.MemoryBackend` copy of the hot
  entries (:data:`FRONT_BYTES` at most), so a hot hit costs a dict lookup, not a SQLite
  read. A copy is served for at most :data:`FRONT_TTL` seconds before the L2 is asked
  again: a delete or flush made through another worker is seen within that time
  (through this worker, at once), as with Redis' local tier.

Why not a shared-memory hash table or a cache process: SQLite already gives atomic writes
across processes, a byte bound with LRU eviction and a lock, tested; a cache process would
add a hop and a process to supervise. The supervisor removes the directory when it exits; a
directory left by a killed supervisor is removed by the next ``reprise serve`` (its name
carries the supervisor's pid).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from reprise.backends.base import Capabilities

if TYPE_CHECKING:
    from reprise.backends.tiered import TieredBackend
    from reprise.config.models import LocalCacheParams

WORKERS_DIR_ENV = "REPRISE_WORKERS_CACHE_DIR"
"""Set by ``reprise serve --workers N`` (N > 1) for its workers: where their shared L2 lives."""
FRONT_BYTES = 32 * 2**20
"""Bytes of hot entries each worker keeps in its own memory (at most ``max_bytes``)."""
FRONT_TTL = 1.0
"""Seconds a worker serves its own copy before asking the shared tier again."""

TIER_HEADROOM = 64 * 2**20
"""Bytes beyond ``max_bytes`` the tier's filesystem must have free: SQLite's WAL and a margin."""

_PREFIX = "reprise-workers-"
_NAME = re.compile(re.escape(_PREFIX) + r"(\d+)-")


def machine_tier(params: LocalCacheParams, directory: str | os.PathLike[str]) -> TieredBackend:
    """``type: local`` for a worker of a multi-worker server: L1 in process over the shared L2."""
    from reprise.backends.disk import DiskBackend
    from reprise.backends.memory import MemoryBackend
    from reprise.backends.tiered import TieredBackend

    front = MemoryBackend(max_entries=params.max_entries, max_bytes=min(params.max_bytes, FRONT_BYTES))
    back = DiskBackend(directory=directory, max_bytes=params.max_bytes)
    tier = TieredBackend(front, back, front_ttl=FRONT_TTL)
    tier.name = "local"
    tier.capabilities = Capabilities(native_ttl=True, shared=True, persistent=False)
    return tier


def workers_dir(environ: Mapping[str, str]) -> str | None:
    """The shared tier's directory when this process is one worker of several, else None."""
    return environ.get(WORKERS_DIR_ENV) or None


@contextlib.contextmanager
def shared_tier_directory(base: str | None = None, need_bytes: int = 0) -> Iterator[Path]:
    """A private directory for one server's shared tier, removed when the block ends.

    On ``/dev/shm`` when it is writable and has room for ``need_bytes`` (the tier is memory,
    not disk), else the system temporary directory: a container's ``/dev/shm`` is 64 MB by
    default, and a tier bounded at 256 MiB there would fill it and stop storing. Directories
    left by supervisors that no longer run are removed first.
    """
    root = base if base is not None else _tier_root(need_bytes)
    _remove_orphans(Path(root))
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _tier_root(need_bytes: int) -> str:
    shm = "/dev/shm"
    if os.access(shm, os.W_OK):
        _remove_orphans(Path(shm))  # their space counts as free
        if shutil.disk_usage(shm).free >= need_bytes + TIER_HEADROOM:
            return shm
    return tempfile.gettempdir()


def _remove_orphans(root: Path) -> None:
    for entry in root.glob(_PREFIX + "*"):
        match = _NAME.match(entry.name)
        if match is None or process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
