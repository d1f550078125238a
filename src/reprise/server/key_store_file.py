"""The key store's file on disk: creating it, converting an earlier JSON keys file, its permissions.

The file keeps the configured path (often ``keys.json``) but holds SQLite in WAL mode,
marked as ours by its application id (:func:`is_store_header`). A JSON file written by
an earlier Reprise (``{"keys": {sha256: {"tenant", "cache", "created"}}}``) is converted
on the first open: its rows are validated, written to a new database under a unique
temporary name, and that database replaces the JSON with ``os.replace`` (readers see the
JSON or the database, never a mix). The JSON is kept beside it as
``<keys_file>.migrated.json``. A JSON file that does not validate stops the start-up.
Creation and conversion hold an exclusive ``flock`` on ``<keys_file>.lock``, so that
workers starting together convert once; the lock file is never removed (removing it
would let two processes hold "the" lock).

Files are created 0600 (SQLite gives ``-wal`` and ``-shm`` the database's mode) and a
missing directory 0700; an existing store readable by others is tightened to 0600 at
open. The directory must not be writable by other users: whoever can write it can
replace the store with their own keys (a warning is logged when it is).

Everything here opens and closes descriptors of the file, so it runs only before this
process has the store open (see :meth:`reprise.server.key_store.KeyFile.moved`).
Connecting, catching up with other processes' changes and writing are
:mod:`reprise.server.key_store`'s.
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


def create_or_convert(path: Path) -> None:
    """Create the store at ``path`` if absent, convert an earlier JSON keys file, or check
    what is there is a store; under the creation lock, so that workers starting together
    do it once. KeyFileError (or OSError, sqlite3.Error) when the file cannot be used."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = directory.stat().st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning("%s: the directory %s is writable by other users, who could replace the key store",
                    SETTING, directory)
    with _exclusive(path.with_name(path.name + ".lock")):
        kind = file_kind(path)
        if kind == "absent":
            _replace_with(path, [])
        elif kind == "json":
            _convert(path)
        elif kind == "other":
            raise KeyFileError("it is neither a Reprise key store (SQLite) nor a JSON key file")
        _tighten(path)


def _convert(path: Path) -> None:
    raw = path.read_bytes()
    rows = parse_json_keys(raw)
    backup = path.with_name(path.name + ".migrated.json")
    _replace_with(path, rows, (backup, raw))
    log.warning("%s: converted %d keys from JSON to SQLite in %s; the JSON is kept as %s",
                SETTING, len(rows), path, backup)


def _replace_with(path: Path, rows: list[KeyRow], backup: tuple[Path, bytes] | None = None) -> None:
    """Build a store holding ``rows`` under a unique name, then move it to the path in one step:
    no process ever opens a half-built store."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _build(tmp, rows)
        if backup is not None:
            _write_private(*backup)
        _remove_sidecars(path)  # a stale -wal would be replayed onto the new database
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


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
        raise ConfigError(f"cannot use the key store {os.fspath(path)}: {reason(exc)}", SETTING) from None


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


def reason(exc: BaseException) -> str:
    """Why an error happened, for a message: the OS error and its file, else the text (no secrets)."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
