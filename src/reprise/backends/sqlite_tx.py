"""SQLite files shared by several processes: switching one to WAL, and write transactions.

The two things every writer of a shared SQLite file here needs to get right, with why
(:mod:`reprise.backends.disk` uses them on every connection and write).
"""

from __future__ import annotations

import sqlite3
import time


def enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch the file to WAL, retrying while another connection switches it.

    WAL mode is stored in the file, so this only changes anything the first time.
    That first switch needs an exclusive lock, and SQLite refuses it at once with
    ``database is locked`` (skipping ``busy_timeout``) when another connection is
    switching the same fresh file: several worker threads, or ``--workers`` N
    gateways, opening a new directory together. Waiting a moment and asking again
    finds the switch done by the other connection.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class WriteTransaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``) on an autocommit connection.

    IMMEDIATE takes the write lock up front, waiting out ``busy_timeout``; a
    deferred transaction that reads and then writes could instead fail at once
    when another process wrote in between.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self.conn.execute("COMMIT")
        finally:
            # SQLite may already have rolled back (e.g. disk full); never mask the error.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
