"""The outage log (:mod:`reprise.outage`): one warning per outage, however partly the store fails."""

from __future__ import annotations

import logging

import pytest

from reprise.outage import LOCK, READ, WRITE, Outage

log = logging.getLogger("reprise.test-outage")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


def test_writes_failing_while_reads_work_is_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(log, "cache backend redis", "serving from upstream")
    with caplog.at_level(logging.WARNING, log.name):
        for _ in range(5):  # each request: a read that works, a lock and a write refused
            outage.succeeded(READ)
            outage.failed(LOCK, "lock", OSError("OOM"))
            outage.failed(WRITE, "set", OSError("OOM"))
        assert outage.kinds == {LOCK, WRITE}
        outage.succeeded(LOCK)
        assert outage.kinds == {WRITE}  # still failing: writes did not work yet
        outage.succeeded(WRITE)
    assert lines(caplog) == [
        "cache backend redis failed on lock (OOM); serving from upstream until it recovers",
        "cache backend redis recovered",
    ]
    assert not outage.kinds


def test_a_read_that_works_again_ends_an_outage_of_reads(caplog: pytest.LogCaptureFixture) -> None:
    """The store was unreachable (reads failed too): it answers again, even if only hits follow."""
    outage = Outage(log, "cache backend redis", "serving from upstream")
    with caplog.at_level(logging.WARNING, log.name):
        outage.failed(WRITE, "set", OSError("down"))  # went down between a request's read and write
        outage.failed(READ, "get", OSError("down"))
        outage.succeeded(READ)
        outage.failed(WRITE, "set", OSError("still full"))  # a new, partial outage
    assert lines(caplog) == [
        "cache backend redis failed on set (down); serving from upstream until it recovers",
        "cache backend redis recovered",
        "cache backend redis failed on set (still full); serving from upstream until it recovers",
    ]
