"""Where a worker's counts go so any worker can answer for the machine (``--workers N``).

Each worker of a multi-worker server writes its :class:`~reprise.observability.snapshot.Snapshot`
to ``metrics/<pid>-<token>.json`` in the private directory ``reprise serve`` creates for its
workers (:mod:`reprise.backends.machine`): every :data:`PUBLISH_INTERVAL` seconds from a
background task, once more when it answers a scrape, and a last time (``final``) when it
shuts down. A write is a temporary file renamed over the old one, so a reader sees a whole
snapshot or the previous one. Requests never wait for any of it: they only increment the
observer's counters, as with one worker.

Why files, not shared memory or a table: the directory is already there, on ``/dev/shm``
(memory), removed with the server; a worker writes only its own file, so there is nothing
to lock, and a worker that exits leaves its final counts for the others to keep adding.
Why publish on a scrape too: what a scrape showed is on file before it is answered, so the
next scrape, whichever worker takes it, shows at least as much, even if this worker has
died in between. A worker killed outright loses at most the counts of its last interval
that no scrape showed. The token in the name keeps a new worker that reuses a pid from
overwriting an exited worker's counts. Files accumulate one per worker started in this
server's life (uvicorn restarts a dead worker), not per request.

With one worker there is no directory: nothing is written, the answer is the process's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reprise.backends.machine import process_alive, workers_dir
from reprise.observability.metrics import Registry
from reprise.observability.observer import Observer
from reprise.observability.snapshot import (
    TOP_KEPT,
    Snapshot,
    add_worker_gauges,
    export_metrics,
    merge_driver,
    merge_registry,
    merge_series,
    merge_top,
    workers_summary,
)

log = logging.getLogger("reprise.observability")

PUBLISH_INTERVAL = 1.0
"""Seconds between a worker's snapshots: the most a machine-wide answer lags another worker."""
SNAPSHOT_DIR = "metrics"


@dataclass(frozen=True, slots=True)
class MachineView:
    """The machine's numbers as one scrape sees them."""

    registry: Registry
    driver: dict[str, int] | None
    workers: dict[str, Any]
    snapshots: tuple[Snapshot, ...]

    def series(self, now: float, span: int) -> list[dict[str, Any]]:
        return merge_series(self.snapshots, now, span)

    def top(self, n: int) -> list[tuple[str, int, str, float]]:
        return merge_top(self.snapshots, n)


class WorkerMetrics:
    """Publishes this worker's snapshot and merges the others' into a :class:`MachineView`."""

    def __init__(self, observer: Observer, directory: str | os.PathLike[str] | None,
                 interval: float = PUBLISH_INTERVAL) -> None:
        self.observer = observer
        self.interval = interval
        self._dir = Path(directory) / SNAPSHOT_DIR if directory is not None else None
        self._path = self._dir / f"{os.getpid()}-{os.urandom(4).hex()}.json" if self._dir is not None else None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    @classmethod
    def from_environ(cls, observer: Observer, environ: Mapping[str, str] | None = None) -> WorkerMetrics:
        """Publishing when this process is one worker of several (``reprise serve --workers N``)."""
        return cls(observer, workers_dir(os.environ if environ is None else environ))

    @property
    def shared(self) -> bool:
        return self._path is not None

    def start(self) -> None:
        """Begin publishing (in the running loop); nothing to do with one worker."""
        if self._dir is None or self._task is not None:
            return
        try:
            self._dir.mkdir(exist_ok=True)
        except OSError as exc:  # fail open: this worker then answers with its own numbers
            log.warning("cannot share this worker's metrics in %s: %s", self._dir, exc)
            self._dir = self._path = None
            return
        self.publish()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        """Stop publishing and leave the final counts for the workers that remain."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.publish(final=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.publish()
            except Exception:  # a bug here must not stop the publishing for good
                log.exception("publishing this worker's metrics failed")

    def snapshot(self, final: bool = False) -> Snapshot:
        """This worker's counts now (requests of the last few ms settled first)."""
        observer = self.observer
        observer.settle()
        now = observer.clock()
        cache = observer.cache
        return Snapshot(
            pid=os.getpid(), started=observer.started, published=now, final=final,
            metrics=export_metrics(observer.metrics.registry),
            driver=asdict(cache.stats) if cache is not None else None,
            series=observer.series.rows(),  # type: ignore[arg-type]  # tuples: orjson writes them as lists
            top=[list(row) for row in observer.hits.top(TOP_KEPT)],
        )

    def publish(self, final: bool = False) -> Snapshot:
        """Take a snapshot and, with several workers, write it where the others read it."""
        snapshot = self.snapshot(final)
        if self._path is not None:
            temporary = self._path.with_suffix(".tmp")
            try:
                temporary.write_bytes(snapshot.to_bytes())
                os.replace(temporary, self._path)
            except OSError as exc:  # the directory went away (server stopping) or is full
                if not self._warned:
                    self._warned = True
                    log.warning("cannot publish this worker's metrics to %s: %s", self._path, exc)
        return snapshot

    def view(self) -> MachineView:
        """The machine's numbers: this worker's, published now, with every other worker's latest."""
        own = self.publish()
        snapshots, live = [own], [True]
        for other in self._others():
            snapshots.append(other)
            live.append(not other.final and process_alive(other.pid))
        summary = workers_summary(snapshots, live, own.published, self.interval if self.shared else None)
        registry = merge_registry(self.observer.metrics.registry, snapshots, live)
        add_worker_gauges(registry, summary)
        return MachineView(registry, merge_driver(snapshots), summary, tuple(snapshots))

    def _others(self) -> list[Snapshot]:
        if self._dir is None:
            return []
        found = []
        for path in self._dir.glob("*.json"):
            if path == self._path:
                continue
            try:
                snapshot = Snapshot.from_bytes(path.read_bytes())
            except OSError:  # removed while listed
                continue
            if snapshot is not None:
                found.append(snapshot)
        return found
