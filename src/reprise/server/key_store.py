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

The file keeps the configured path (often ``keys.json``) but holds SQLite. A JSON file
written by an earlier Reprise (``{"keys": {sha256: {"tenant", "cache", "created"}}}``)
is converted on the first open: its rows are validated, written to a new database under
a unique temporary name, and that database replaces the JSON with ``os.replace`` (readers
see the JSON or the database, never a mix). The JSON is kept beside it as
``<keys_file>.migrated.json``. A JSON file that does not validate stops the start-up.
Creation and conversion hold an exclusive ``flock`` on ``<keys_file>.lock``, so that
workers starting together convert once; the lock file is never removed (removing it
would let two processes hold "the" lock).

Files are created 0600 (SQLite gives ``-wal`` and ``-shm`` the database's mode) and a
missing directory 0700; an existing store readable by others is tightened to 0600 at
open. The directory must not be writable by other users: whoever can write it can
replace the store with their own keys (a warning is logged when it is). WAL needs a
local filesystem (its index is shared memory): the store is shared by the processes of
one host, not across hosts.

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
import fcntl
import json
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprise.errors import ConfigError

log = logging.getLogger("reprise.server")

SETTING = "general_settings.keys_file"
SQLITE_MAGIC = b"SQLite format 3\x00"
APPLICATION_ID = 0x52505253  # "RPRS" in the header: this SQLite file is a Reprise key store
SCHEMA_VERSION = 1
WRITE_TIMEOUT = 10.0
"""Seconds a generate or revoke waits for another process's write before failing (503)."""
READ_TIMEOUT = 1.0
"""Seconds a read waits on a lock (WAL readers only wait during another process's crash recovery);
a read that times out keeps the last good keys and is retried."""
LOCK_TIMEOUT = 10.0
"""Seconds ``open`` waits for another process creating or converting the store."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rev INTEGER NOT NULL,
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, rev, generation) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS keys (
    digest TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    cache TEXT,
    created REAL NOT NULL,
    revoked REAL,
    rev INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS keys_by_rev ON keys (rev);
CREATE TRIGGER IF NOT EXISTS keys_inserted AFTER INSERT ON keys BEGIN
    UPDATE meta SET rev = rev + 1;
    UPDATE keys SET rev = (SELECT rev FROM meta) WHERE digest = NEW.digest;
END;
CREATE TRIGGER IF NOT EXISTS keys_changed AFTER UPDATE OF tenant, cache, revoked ON keys BEGIN
    UPDATE meta SET rev = rev + 1;
    UPDATE keys SET rev = (SELECT rev FROM meta) WHERE digest = NEW.digest;
END;
CREATE TRIGGER IF NOT EXISTS keys_rekeyed AFTER UPDATE OF digest ON keys BEGIN
    UPDATE meta SET generation = generation + 1;
END;
CREATE TRIGGER IF NOT EXISTS keys_deleted AFTER DELETE ON keys BEGIN
    UPDATE meta SET generation = generation + 1;
END;
"""


class KeyFileError(Exception):
    """The store could not be read or written after it was opened (``str`` says why, no secrets)."""


@dataclass(frozen=True, slots=True)
class KeyRow:
    """One managed key as stored: its digest, tenant, cache defaults (a dict) and whether it is revoked."""

    digest: str
    tenant: str
    cache: dict[str, Any] | None
    revoked: bool


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
                self._prepare()
            self._connect()
        except (OSError, sqlite3.Error, KeyFileError) as exc:
            self.close()
            raise ConfigError(f"cannot use the key store {os.fspath(self.path)}: {_reason(exc)}", SETTING) from None
        except ConfigError:
            self.close()
            raise

    def _prepare(self) -> None:
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = directory.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            log.warning("%s: the directory %s is writable by other users, who could replace the key store",
                        SETTING, directory)
        with _exclusive(self.path.with_name(self.path.name + ".lock")):
            kind = file_kind(self.path)
            if kind == "absent":
                self._replace_with([])
            elif kind == "json":
                self._convert()
            elif kind == "other":
                raise KeyFileError("it is neither a Reprise key store (SQLite) nor a JSON key file")
            _tighten(self.path)

    def _convert(self) -> None:
        raw = self.path.read_bytes()
        rows = parse_json_keys(raw)
        backup = self.path.with_name(self.path.name + ".migrated.json")
        self._replace_with(rows, (backup, raw))
        log.warning("%s: converted %d keys from JSON to SQLite in %s; the JSON is kept as %s",
                    SETTING, len(rows), self.path, backup)

    def _replace_with(self, rows: list[KeyRow], backup: tuple[Path, bytes] | None = None) -> None:
        """Build a store holding ``rows`` under a unique name, then move it to the path in one step:
        no process ever opens a half-built store."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            _build(tmp, rows)
            if backup is not None:
                _write_private(*backup)
            _remove_sidecars(self.path)  # a stale -wal would be replayed onto the new database
            os.replace(tmp, self.path)
            _fsync_directory(self.path.parent)
        finally:
            tmp.unlink(missing_ok=True)

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
            raise KeyFileError(_reason(exc)) from None

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
            raise KeyFileError(_reason(exc)) from None
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
                raise KeyFileError(_reason(exc)) from None
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


def inspect(path: str | os.PathLike[str] | None) -> str | None:
    """What ``reprise config check`` says of the store, without creating, converting or locking
    anything; ConfigError when ``serve`` would refuse it. Only the header of a SQLite store is
    read: damage further in is found by ``serve``'s integrity check."""
    if path is None:
        return None
    file = Path(path)
    try:
        kind = file_kind(file)
        if kind == "absent":
            parent = next(p for p in (file.parent, *file.parent.parents) if p.exists())
            if not os.access(parent, os.W_OK | os.X_OK):
                raise KeyFileError(f"it does not exist and {parent} is not writable")
            return f"{SETTING}: {file} will be created at start"
        if kind == "other":
            raise KeyFileError("it is neither a Reprise key store (SQLite) nor a JSON key file")
        if not os.access(file, os.R_OK | os.W_OK) or not os.access(file.parent, os.W_OK | os.X_OK):
            raise KeyFileError("it (or its directory) is not readable and writable")
        if kind == "json":
            rows = parse_json_keys(file.read_bytes())
            return f"{SETTING}: {file} is a JSON key file ({len(rows)} keys), converted to SQLite at start"
        with open(file, "rb") as f:
            header = f.read(100)
        if not is_store_header(header):
            raise KeyFileError("it is a SQLite database but not a Reprise key store")
        return f"{SETTING}: {file} (SQLite key store)"
    except (OSError, KeyFileError) as exc:
        raise ConfigError(f"cannot use the key store {os.fspath(path)}: {_reason(exc)}", SETTING) from None


# -- the file on disk --------------------------------------------------------------------


def file_kind(path: Path) -> str:
    """``absent`` (or empty), ``sqlite``, ``json`` or ``other``, from the first bytes. OSError if unreadable.

    Opens and closes the file: only before this process has the store open (see ``KeyFile.moved``).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return "absent"
    if not head:
        return "absent"
    if head == SQLITE_MAGIC:
        return "sqlite"
    return "json" if head.lstrip()[:1] == b"{" else "other"


def is_store_header(header: bytes) -> bool:
    """Whether the first bytes of a file are those of a Reprise key store (SQLite, our application id).

    The store is checkpointed once created, so its file on disk always carries both."""
    return header[:16] == SQLITE_MAGIC and int.from_bytes(header[68:72], "big") == APPLICATION_ID


def parse_json_keys(raw: bytes) -> list[KeyRow]:
    """The rows of an earlier Reprise's JSON keys file, validated; KeyFileError naming what is wrong."""
    from reprise.config.tenancy import KeyCacheDefaults, _check_sha256, _check_tenant

    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise KeyFileError(f"it is not valid JSON ({exc})") from None
    table = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise KeyFileError('it is JSON but not a keys file ({"keys": {sha256: {...}}})')
    rows = []
    for number, (digest, row) in enumerate(table.items()):
        try:
            if not isinstance(row, dict) or not isinstance(row.get("tenant"), str):
                raise ValueError("no tenant")
            _check_sha256(digest)
            _check_tenant(row["tenant"])
            cache = row.get("cache") or None
            if cache is not None:
                cache = KeyCacheDefaults.model_validate(cache).model_dump(exclude_none=True)
        except ValueError:
            raise KeyFileError(f"JSON key number {number + 1} is not valid (digest, tenant or cache)") from None
        rows.append(KeyRow(digest, row["tenant"], cache, revoked=False))
    return rows


def _build(path: Path, rows: list[KeyRow]) -> None:
    """A new store at ``path`` (0600), in WAL mode, holding ``rows``; on disk when this returns."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(fd)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _statements(SCHEMA):
            conn.execute(statement)
        now = time.time()
        conn.executemany(
            "INSERT INTO keys (digest, tenant, cache, created) VALUES (?, ?, ?, ?)",
            [(r.digest, r.tenant, json.dumps(r.cache, sort_keys=True) if r.cache else None, now) for r in rows],
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    _fsync(path)


def _statements(script: str) -> Iterator[str]:
    """The statements of :data:`SCHEMA` (a trigger's body holds ``;`` and ends with ``END;``)."""
    buffer = ""
    for line in script.strip().splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


def _row(digest: str, tenant: str, cache: str | None, revoked: float | None) -> KeyRow:
    return KeyRow(digest, tenant, json.loads(cache) if cache else None, revoked is not None)


def _tighten(path: Path) -> None:
    """An existing store (and its sidecars) readable by others becomes 0600."""
    for file in (path, *_sidecars(path)):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                os.chmod(file, mode & 0o700)
                log.warning("%s: %s was readable or writable by others; now %o", SETTING, file, mode & 0o700)


def _sidecars(path: Path) -> tuple[Path, ...]:
    return tuple(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))


def _remove_sidecars(path: Path) -> None:
    for file in _sidecars(path):
        file.unlink(missing_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        _fsync(path)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``lock_path`` (created 0600), waited for up to :data:`LOCK_TIMEOUT`."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KeyFileError(f"another process holds {lock_path} for more than {LOCK_TIMEOUT:g}s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
