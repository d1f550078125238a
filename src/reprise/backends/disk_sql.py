"""The SQL of the disk store (:mod:`reprise.backends.disk`): its schema, and the statements that
need more than one line. No state: each function takes a connection, in a transaction of its caller's
where it says so; the store keeps the counts and the threads.
"""

from __future__ import annotations

import sqlite3

from reprise.backends.lock_owner import owner_gone
from reprise.backends.sqlite_tx import WriteTransaction

#: Keys per ``IN (...)`` or page: under SQLite's oldest host-parameter limit (999).
CHUNK = 500
# ``value`` is last so reading the small columns never walks a large blob's overflow
# pages; (accessed_at, size) covers both the LRU scan and SUM(size).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, expires_at REAL,"
    " size INTEGER NOT NULL, accessed_at REAL NOT NULL, value BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_lru ON entries (accessed_at, size)",
    "CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at)",
    # Single-flight across the processes sharing the file (DistributedLock).
    "CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL,"
    " expires_at REAL NOT NULL) WITHOUT ROWID",
)



def take_lock(conn: sqlite3.Connection, key: str, owner: str, ttl: float, now: float) -> bool:
    """Take the lock if it is free, expired, or held by a process that is gone (lock_owner.py)."""
    with WriteTransaction(conn):
        taken = conn.execute(
            "INSERT INTO locks (key, owner, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
            " WHERE locks.expires_at <= ?",
            (key, owner, now + ttl, now),
        ).rowcount
        if taken != 1:
            row = conn.execute("SELECT owner FROM locks WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0] != owner and owner_gone(row[0]):
                taken = conn.execute(
                    "UPDATE locks SET owner = ?, expires_at = ? WHERE key = ? AND owner = ?",
                    (owner, now + ttl, key, row[0]),
                ).rowcount
    return bool(taken == 1)



# Rows of the locks table that mark a process waiting for a key's holder (``{WAIT_MARK}{key}\x02{owner}``):
# the control characters keep them apart from lock rows, whose keys are cache keys.
WAIT_MARK, WAIT_MARK_END = "\x01wait:", "\x01wait;"


def mark_waiting(conn: sqlite3.Connection, key: str, owner: str, ttl: float, now: float) -> None:
    """A row of the locks table per waiting process, expiring after ``ttl`` (expired ones are
    dropped here: a mark lives seconds, so they are few)."""
    with WriteTransaction(conn):
        conn.execute("DELETE FROM locks WHERE key >= ? AND key < ? AND expires_at <= ?",
                     (WAIT_MARK, WAIT_MARK_END, now))
        conn.execute("INSERT OR REPLACE INTO locks (key, owner, expires_at) VALUES (?, ?, ?)",
                     (f"{WAIT_MARK}{key}\x02{owner}", owner, now + ttl))


def has_waiters(conn: sqlite3.Connection, key: str, now: float) -> bool:
    rows = conn.execute("SELECT 1 FROM locks WHERE key > ? AND key < ? AND expires_at > ? LIMIT 1",
                        (f"{WAIT_MARK}{key}\x02", f"{WAIT_MARK}{key}\x03", now))
    return rows.fetchone() is not None

def keys_page(conn: sqlite3.Connection, after: str | None, namespace: str | None, now: float) -> list[str]:
    """Up to :data:`CHUNK` live keys in key order, strictly after ``after`` (None: from the start)."""
    clauses: list[str] = ["(expires_at IS NULL OR expires_at > ?)"]
    args: list[object] = [now]
    if namespace is not None:
        clauses += ["key >= ?", "key < ?"]
        args += prefix_range(namespace)
    if after is not None:
        clauses.append("key > ?")
        args.append(after)
    rows = conn.execute(
        f"SELECT key FROM entries WHERE {' AND '.join(clauses)} ORDER BY key LIMIT {CHUNK}",
        args,
    )
    return [key for (key,) in rows]


def evict_lru(conn: sqlite3.Connection, target: int, now: float) -> tuple[int, float | None]:
    """Drop expired rows, then least recently accessed ones, to ``target`` bytes.

    Returns the true total after it (other processes' writes included) and the oldest ``accessed_at`` left."""
    with WriteTransaction(conn):
        conn.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
        total = stored_bytes(conn)
        while total > target:
            rows = conn.execute(
                "SELECT key, size FROM entries ORDER BY accessed_at LIMIT ?", (CHUNK,)
            ).fetchall()
            victims = []
            for key, size in rows:
                if total <= target:
                    break
                victims.append((key,))
                total -= size
            if not victims:
                break
            conn.executemany("DELETE FROM entries WHERE key = ?", victims)
        oldest = conn.execute("SELECT MIN(accessed_at) FROM entries").fetchone()[0]
    return total, oldest


def stored_bytes(conn: sqlite3.Connection) -> int:
    total: int = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
    return total


def prefix_range(namespace: str) -> tuple[str, str]:
    """Bounds of keys starting ``{namespace}:`` (``;`` sorts right after ``:``), index-friendly."""
    return f"{namespace}:", f"{namespace};"
