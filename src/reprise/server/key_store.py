"""``general_settings.keys_file``: the virtual keys made through ``/key/generate``, in SQLite.

Every worker of ``reprise serve --workers N`` (and any other process) opens the same
file. SQLite in WAL mode gives what a JSON file rewritten by each process could not:

- A generate or a revoke is one transaction (``BEGIN IMMEDIATE``): writers are
  serialised across processes by SQLite's lock, waiting up to :data:`WRITE_TIMEOUT`,
  so no update is ever lost, and a 200 is answered only after the commit is on disk
  (``synchronous=FULL``: a revocation survives a power cut).
- Readers never wait for a writer and never see half a write (WAL snapshots).
- A reader catches up cheaply: ``PRAGMA data_version`` says whether another connection
  committed; triggers give every inserted or changed row the next store revision
  (``meta.rev``), so catching up reads only the rows past the reader's revision. A row
  deleted or re-keyed (by hand, with the ``sqlite3`` shell) bumps ``meta.generation``
  instead, which makes readers reload everything. The API never deletes: a revoked key
  keeps its row with the time of revocation, so that revocation is a change like any other.

Creating the file, converting an earlier JSON keys file, the creation lock and the
files' permissions are :mod:`reprise.server.key_store_file`'s; this module connects to
the store, catches up with other processes' changes and writes. WAL needs a local
filesystem (its index is shared memory): the store is shared by the processes of one
host, not across hosts.

Do not remove or replace the file while a Reprise process has it open: each running
process keeps the keys it last read and refuses changes (503) until restarted; it never
opens another file under the old one's ``-wal``, which SQLite would replay onto it. To
restore a backup, stop the gateway, delete ``<keys_file>-wal`` and ``-shm``, then put
the backup (made with ``sqlite3 keys.json ".backup copy"``) in place. A file found
missing at start is created empty, so a removed store revokes every managed key once
the gateway restarts. For the same reason this module never opens and closes a second
descriptor of the database while it is open (see :meth:`KeyFile.moved`).

Errors are translated at this edge: opening raises :class:`~reprise.errors.ConfigError`
naming ``general_settings.keys_file``; reading or writing later raises
:class:`KeyFileError`, which the caller turns into "keep the last good keys" (reads)
or a 503 (writes).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprise.errors import ConfigError
from reprise.server.key_store_file import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SETTING,
    KeyFileError,
    KeyRow,
    create_or_convert,
    is_store_header,
    reason,
)

WRITE_TIMEOUT = 10.0
"""Seconds a generate or revoke waits for another process's write before failing (503)."""
READ_TIMEOUT = 1.0
"""Seconds a read waits on a lock (WAL readers only wait during another process's crash recovery);
a read that times out keeps the last good keys and is retried."""


@dataclass(frozen=True, slots=True)
class Changes:
    """What a reader learnt: every live row (``full``), or the rows changed since its last read."""

    rows: list[KeyRow]
    full: bool


class KeyFile:
    """One process's handle on the store.

    A reader connection (``moved``, ``changed``, ``changes``: the caller serialises
    them) and a writer connection (``insert``, ``revoke``, serialised here): a write
    waiting for another process never holds up a read. Blocking: call it from threads,
    not from the event loop. Created without I/O.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._identity: tuple[int, int] | None = None
        self._fd: int | None = None
        self._version = -1
        self._rev = -1
        self._generation = -1

    # -- opening ------------------------------------------------------------------------

    def open(self, create: bool = True) -> None:
        """Open the store, creating it (``create``) or converting a JSON file first.

        Raises ConfigError naming ``general_settings.keys_file`` when the file cannot be
        used; the caller must then refuse to start.
        """
        try:
            if create:
                create_or_convert(self.path)
            self._connect()
        except (OSError, sqlite3.Error, KeyFileError) as exc:
            self.close()
            raise ConfigError(f"cannot use the key store {os.fspath(self.path)}: {reason(exc)}", SETTING) from None
        except ConfigError:
            self.close()
            raise

    def _connect(self) -> None:
        self.close()
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise KeyFileError("it does not exist") from None
        self._fd = fd  # kept open until close(): see moved()
        if not is_store_header(os.pread(fd, 72, 0)):
            raise KeyFileError("it is not a Reprise key store (SQLite)")
        reader = sqlite3.connect(self.path, timeout=READ_TIMEOUT, isolation_level=None, check_same_thread=False)
        self._reader = reader
        app_id = reader.execute("PRAGMA application_id").fetchone()[0]
        version = reader.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID or version != SCHEMA_VERSION:
            raise KeyFileError("it is a SQLite database but not a Reprise key store (or of another version)")
        if reader.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise KeyFileError("its journal mode is not WAL (changed by hand?)")
        problems = [row[0] for row in reader.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise KeyFileError(f"it is damaged ({problems[0]})")
        writer = sqlite3.connect(self.path, timeout=WRITE_TIMEOUT, isolation_level=None, check_same_thread=False)
        writer.execute("PRAGMA synchronous=FULL")
        self._writer = writer
        info = os.fstat(fd)
        self._identity = info.st_dev, info.st_ino
        self._version = self._rev = self._generation = -1

    def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._reader = self._writer = None
        if self._fd is not None:  # after the connections: closing it drops this process's locks on the file
            os.close(self._fd)
            self._fd = None

    # -- reading ---------------------------------------------------------------------------

    def moved(self) -> bool:
        """Whether the path names another file than the one opened (replaced, removed); a few µs.

        KeyFileError if it is still that file but its header is no longer a key store's
        (overwritten in place): SQLite itself may notice only when it next reads the header.
        The header is read through the descriptor opened with the store, never a new one:
        closing any descriptor of the database file drops every POSIX lock this process
        holds on it, SQLite's included, and another process could then take its WAL away
        (https://www.sqlite.org/howtocorrupt.html, section 2.2).
        """
        try:
            info = os.stat(self.path)
        except OSError:
            return True
        if (info.st_dev, info.st_ino) != self._identity:
            return True
        if self._fd is None or not is_store_header(os.pread(self._fd, 72, 0)):
            raise KeyFileError(f"{self.path} was overwritten: it is no longer a key store")
        return False

    def changed(self) -> bool:
        """Whether another connection committed since the last :meth:`changes` (a few µs)."""
        try:
            return int(self._read().execute("PRAGMA data_version").fetchone()[0]) != self._version
        except sqlite3.Error as exc:
            raise KeyFileError(reason(exc)) from None

    def changes(self) -> Changes:
        """The rows changed since the last call; every live row on the first call or after a delete."""
        reader = self._read()
        try:
            reader.execute("BEGIN")
            try:
                version = int(reader.execute("PRAGMA data_version").fetchone()[0])
                rev, generation = reader.execute("SELECT rev, generation FROM meta WHERE id = 1").fetchone()
                full = generation != self._generation
                if full:
                    cursor = reader.execute("SELECT digest, tenant, cache, revoked FROM keys WHERE revoked IS NULL")
                else:
                    cursor = reader.execute("SELECT digest, tenant, cache, revoked FROM keys WHERE rev > ?",
                                            (self._rev,))
                rows = [_row(*values) for values in cursor]
            finally:
                reader.execute("COMMIT")
        except (sqlite3.Error, TypeError, ValueError) as exc:
            raise KeyFileError(reason(exc)) from None
        self._version, self._rev, self._generation = version, rev, generation
        return Changes(rows, full)

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise KeyFileError("the key store is closed")
        return self._reader

    # -- writing (worker threads) -------------------------------------------------------

    def insert(self, digest: str, tenant: str, cache: dict[str, Any] | None) -> None:
        """Add a key; committed to disk when this returns."""
        cache_json = json.dumps(cache, sort_keys=True) if cache else None
        self._write("INSERT INTO keys (digest, tenant, cache, created) VALUES (?, ?, ?, ?)",
                    [(digest, tenant, cache_json, time.time())])

    def revoke(self, digests: list[str]) -> int:
        """Mark these keys revoked; the number that were live. Committed when this returns."""
        now = time.time()
        return self._write("UPDATE keys SET revoked = ? WHERE digest = ? AND revoked IS NULL",
                           [(now, d) for d in dict.fromkeys(digests)])

    def _write(self, sql: str, params: list[tuple[Any, ...]]) -> int:
        with self._write_lock:
            if self._writer is None:
                raise KeyFileError("the key store is closed")
            if self.moved():  # writing to a removed, replaced or overwritten file would lose the update
                raise KeyFileError(f"{self.path} was removed or replaced")
            writer = self._writer
            try:
                writer.execute("BEGIN IMMEDIATE")
                try:
                    count = writer.executemany(sql, params).rowcount
                    writer.execute("COMMIT")
                except BaseException:
                    writer.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise KeyFileError(reason(exc)) from None
            return count


def prepare(path: str | os.PathLike[str] | None) -> None:
    """Create or convert the store and read it once: ``reprise serve`` calls this before any
    worker starts, so that a store that cannot be used stops it (ConfigError) instead of
    each worker failing on its own."""
    if path is None:
        return
    file = KeyFile(path)
    file.open()
    try:
        file.changes()
    except KeyFileError as exc:
        raise ConfigError(f"cannot read the key store {os.fspath(path)}: {exc}", SETTING) from None
    finally:
        file.close()


def _row(digest: str, tenant: str, cache: str | None, revoked: float | None) -> KeyRow:
    return KeyRow(digest, tenant, json.loads(cache) if cache else None, revoked is not None)
