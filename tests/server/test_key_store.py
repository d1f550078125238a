"""The managed key store (``keys_file``): safe with any number of workers, closed when broken.

Found on the JSON store: with ``--workers 2``, generated keys were lost although each got a
200, all existing keys once stopped working, a revoked key kept working after
``{"deleted": 1}``, some calls answered 500; a broken file was read as "no keys"; the file
was written 0644.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from reprise.errors import ConfigError, ServiceUnavailable
from reprise.server.auth import CHECK_INTERVAL, KeyStore
from reprise.server.key_store import KeyFile, prepare
from reprise.server.key_store_file import inspect
from tests.server.conftest import AUTH, GatewayProcess, gateway_config
from tests.server.test_closed_by_default import run_reprise, write_config
from tests.support.stub_upstream import StubUpstream

SETTING = "general_settings.keys_file"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def legacy_json(path: Path, keys: dict[str, dict[str, Any]]) -> None:
    """A keys file as Reprise wrote it before the SQLite store."""
    path.write_text(json.dumps({"keys": {sha(k): row for k, row in keys.items()}}))


# --- the store in process ---------------------------------------------------------------------


@pytest.fixture()
def stores() -> Iterator[Callable[[Path], KeyStore]]:
    """Key stores as workers hold them; closed (watchers stopped) at the end."""
    made: list[KeyStore] = []

    def make(path: Path) -> KeyStore:
        made.append(KeyStore([], str(path)))
        return made[-1]

    yield make
    for store in made:
        store.close()


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def test_a_generate_or_revoke_reaches_every_process(tmp_path: Path,
                                                          stores: Callable[[Path], KeyStore]) -> None:
    here, there = stores(tmp_path / "keys.json"), stores(tmp_path / "keys.json")  # two workers' stores
    key, key_digest = await here.generate("team-a", {"mode": "default_off"})
    assert here.lookup(key.encode()) is not None  # at once where it was made
    assert eventually(lambda: there.lookup(key.encode()) is not None)  # by the watcher, without a lookup
    found = there.lookup(key.encode())
    assert found is not None and found.tenant == "team-a" and found.defaults is not None
    assert await there.revoke([key_digest]) == 1
    assert there.lookup(key.encode()) is None
    assert eventually(lambda: here.lookup(key.encode()) is None)
    assert await here.revoke([key_digest]) == 0


def _generate_many(path: str, count: int) -> list[str]:
    async def run() -> list[str]:
        store = KeyStore([], path)
        try:
            return [(await store.generate("team-a", None))[1] for _ in range(count)]
        finally:
            store.close()

    return asyncio.run(run())


def test_writers_in_many_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.json")
    prepare(path)
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        made = [d for batch in pool.starmap(_generate_many, [(path, 25)] * 4) for d in batch]
    file = KeyFile(path)
    file.open()
    assert sorted(row.digest for row in file.changes().rows) == sorted(made)
    file.close()


def test_files_are_private(tmp_path: Path, stores: Callable[[Path], KeyStore]) -> None:
    path = tmp_path / "state" / "keys.json"
    asyncio.run(stores(path).generate("team-a", None))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    files = list(path.parent.iterdir())
    assert {f.name for f in files} >= {"keys.json", "keys.json-wal", "keys.json-shm", "keys.json.lock"}
    assert all(private(f) for f in files), [(f.name, oct(f.stat().st_mode)) for f in files]


def test_a_store_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    prepare(path)
    path.chmod(0o644)
    prepare(path)
    assert private(path)


def test_a_json_keys_file_is_converted_once(tmp_path: Path, stores: Callable[[Path], KeyStore]) -> None:
    path = tmp_path / "keys.json"
    legacy_json(path, {"sk-old-a": {"tenant": "team-a", "created": 1.0},
                       "sk-old-b": {"tenant": "team-b", "cache": {"mode": "default_off", "ttl": 60}}})
    path.chmod(0o644)
    assert "JSON key file (2 keys)" in (inspect(path) or "")
    store = stores(path)
    assert path.read_bytes().startswith(b"SQLite format 3\x00") and private(path)
    backup = tmp_path / "keys.json.migrated.json"
    assert private(backup) and len(json.loads(backup.read_text())["keys"]) == 2
    a, b = store.lookup(b"sk-old-a"), store.lookup(b"sk-old-b")
    assert a is not None and a.tenant == "team-a" and a.defaults is None
    assert b is not None and b.defaults is not None and b.defaults.ttl == 60
    prepare(path)  # a second open finds SQLite: nothing converted twice
    assert len(stored_rows(path)) == 2


def stored_rows(path: Path) -> list[Any]:
    file = KeyFile(path)
    file.open(create=False)
    try:
        return file.changes().rows
    finally:
        file.close()


@pytest.mark.parametrize("content", [
    b"not json at all",
    b'{"keys": {"not-a-digest": {"tenant": "a"}}}',
    json.dumps({"keys": {sha("k"): {"tenant": "a/b"}}}).encode(),
    b'["a list"]',
    b"\x00\x01 binary",
])
def test_a_broken_file_refuses_to_open(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    for attempt in (lambda: prepare(path), lambda: inspect(path), lambda: KeyStore([], str(path))):
        with pytest.raises(ConfigError) as info:
            attempt()
        assert info.value.path == SETTING
    assert path.read_bytes() == content  # left as it was, for its owner to look at


def test_a_foreign_or_damaged_sqlite_file_refuses_to_open(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE keys (digest TEXT)")
    conn.close()
    damaged = tmp_path / "damaged.db"
    prepare(damaged)
    with sqlite3.connect(damaged) as conn:
        conn.executemany("INSERT INTO keys (digest, tenant, created) VALUES (?, 'a', 0)",
                         [(sha(str(i)),) for i in range(2000)])
    conn.close()
    stored_rows(damaged)  # checkpointed on close: the rows are in the main file now
    with open(damaged, "r+b") as f:
        f.seek(4096 * 3)
        f.write(os.urandom(4096 * 4))
    for path in (foreign, damaged):
        with pytest.raises(ConfigError) as info:
            prepare(path)
        assert info.value.path == SETTING, path


async def test_a_store_broken_while_running_keeps_the_last_good_keys(
        tmp_path: Path, stores: Callable[[Path], KeyStore], caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.json"
    store = stores(path)
    kept, _ = await store.generate("team-a", None)
    revoked, revoked_digest = await store.generate("team-a", None)
    await store.revoke([revoked_digest])
    path.write_bytes(b"garbage " * 1000)  # in place: same file, overwritten
    assert eventually(lambda: any(r.levelname == "ERROR" for r in caplog.records))
    for _ in range(3):
        time.sleep(CHECK_INTERVAL)
        assert store.lookup(kept.encode()) is not None
        assert store.lookup(revoked.encode()) is None
        assert len(store) == 1
    with pytest.raises(ServiceUnavailable):
        await store.generate("team-a", None)
    with pytest.raises(ServiceUnavailable):
        await store.revoke([sha(kept)])
    with pytest.raises(ServiceUnavailable):
        await store.describe()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and SETTING in errors[0].getMessage()  # once


async def test_a_removed_store_keeps_the_last_good_keys_and_a_restored_one_is_read(
        tmp_path: Path, stores: Callable[[Path], KeyStore]) -> None:
    path = tmp_path / "keys.json"
    store = stores(path)
    kept, kept_digest = await store.generate("team-a", None)
    backup = tmp_path / "backup"
    os.link(path, backup)
    path.unlink()
    with pytest.raises(ServiceUnavailable):
        await store.generate("team-a", None)  # would be written into a file nobody else reads
    assert store.lookup(kept.encode()) is not None
    os.rename(backup, path)  # the same file is back: nothing was missed
    other = stores(path)
    made, _ = await other.generate("team-b", None)
    assert eventually(lambda: store.lookup(made.encode()) is not None)  # retried every RETRY_INTERVAL
    assert store.lookup(kept.encode()) is not None
    assert await store.revoke([kept_digest]) == 1


async def test_a_store_replaced_while_running_keeps_the_last_good_keys(
        tmp_path: Path, stores: Callable[[Path], KeyStore]) -> None:
    path = tmp_path / "keys.json"
    store = stores(path)
    old, _ = await store.generate("team-a", None)
    replacement = tmp_path / "other" / "keys.json"
    other = stores(replacement)
    new, _ = await other.generate("team-b", None)
    other.close()
    os.replace(replacement, path)
    with pytest.raises(ServiceUnavailable):
        await store.generate("team-a", None)
    assert store.lookup(old.encode()) is not None and store.lookup(new.encode()) is None


async def test_rows_edited_by_hand_are_seen(tmp_path: Path, stores: Callable[[Path], KeyStore]) -> None:
    path = tmp_path / "keys.json"
    store = stores(path)
    a, a_digest = await store.generate("team-a", None)
    b, b_digest = await store.generate("team-b", None)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM keys WHERE digest = ?", (a_digest,))
        conn.execute("UPDATE keys SET tenant = 'team-c' WHERE digest = ?", (b_digest,))
    conn.close()
    assert eventually(lambda: store.lookup(a.encode()) is None)
    assert eventually(lambda: getattr(store.lookup(b.encode()), "tenant", None) == "team-c")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE keys SET tenant = 'no/slash' WHERE digest = ?", (b_digest,))
    conn.close()
    assert eventually(lambda: store.lookup(b.encode()) is None)  # an invalid row is refused, never trusted


# --- through real processes -----------------------------------------------------------------


_clients = threading.local()


def client() -> httpx.Client:
    """This thread's client (making one per request costs ~50 ms of TLS set-up, even for http)."""
    if not hasattr(_clients, "client"):
        _clients.client = httpx.Client(timeout=30)
    return cast(httpx.Client, _clients.client)


def status_of(url: str, key: str) -> int:
    """``GET /v1/models`` with ``key`` on a new connection (so any worker may answer)."""
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
    return client().get(url + "/v1/models", headers=headers).status_code


def settles(url: str, key: str, expected: int, timeout: float = 5.0) -> bool:
    """Whether ``key`` gets ``expected`` on five new connections in a row within ``timeout``.

    A worker that did not make a change may answer the old way for up to a check interval.
    """
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 5:
        if time.monotonic() > deadline:
            return False
        streak = streak + 1 if status_of(url, key) == expected else 0
    return True


@pytest.fixture()
def four_workers(stub: StubUpstream, tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(keys_file: Path, workers: int = 4) -> GatewayProcess:
        config = gateway_config(stub.url, keys_file=str(keys_file))
        gw = GatewayProcess(config, tmp_path, extra_args=["--workers", str(workers)]).start(timeout=30)
        started.append(gw)
        deadline = time.monotonic() + 30  # ready means one worker is: wait for all of them
        while gw.log.count("Application startup complete") < workers:
            assert time.monotonic() < deadline, gw.log
            time.sleep(0.05)
        return gw

    yield start
    for gw in started:
        gw.stop()


def generate(url: str) -> tuple[str, str]:
    r = client().post(url + "/key/generate", json={"tenant": "team-a"}, headers={**AUTH, "Connection": "close"})
    assert r.status_code == 200, r.text
    return r.json()["key"], sha(r.json()["key"])


def revoke(url: str, key_digest: str) -> None:
    r = client().post(url + "/key/delete", json={"key_sha256": [key_digest]}, headers={**AUTH, "Connection": "close"})
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": 1}


def test_concurrent_generates_and_revokes_across_four_workers(four_workers: Callable[..., GatewayProcess],
                                                              tmp_path: Path) -> None:
    keys_file = tmp_path / "state" / "keys.json"
    gw = four_workers(keys_file)
    with ThreadPoolExecutor(48) as pool:
        seeded = list(pool.map(lambda _: generate(gw.url), range(40)))
        to_revoke, to_keep = seeded[:20], seeded[20:]

        def churn(_: int) -> tuple[str, str]:  # made and revoked at once, possibly on two workers
            made = generate(gw.url)
            revoke(gw.url, made[1])
            return made

        generated = [pool.submit(generate, gw.url) for _ in range(120)]
        churned = [pool.submit(churn, i) for i in range(40)]
        revoked = [pool.submit(revoke, gw.url, d) for _, d in to_revoke]
        live = to_keep + [f.result() for f in generated]
        dead = to_revoke + [f.result() for f in churned]
        for f in revoked:
            f.result()
        # 240 admin calls (200 of them concurrent), each answered 200; now every worker must agree
        live_ok = list(pool.map(lambda k: settles(gw.url, k[0], 200), live))
        dead_ok = list(pool.map(lambda k: settles(gw.url, k[0], 401), dead))
    assert live_ok.count(False) == 0, f"{live_ok.count(False)} of {len(live)} live keys do not work"
    assert dead_ok.count(False) == 0, f"{dead_ok.count(False)} of {len(dead)} revoked keys still work"
    listed = httpx.get(gw.url + "/key/list", headers=AUTH).json()["keys"]
    assert sorted(k["key_id"] for k in listed) == sorted(d[:12] for _, d in live)
    files = list(keys_file.parent.iterdir())
    assert all(private(f) for f in files), [(f.name, oct(f.stat().st_mode)) for f in files]
    assert " 500 " not in gw.log and "Traceback" not in gw.log


def test_a_json_keys_file_is_converted_and_its_keys_work_on_every_worker(
        four_workers: Callable[..., GatewayProcess], tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    legacy_json(keys_file, {"sk-from-json": {"tenant": "team-a", "created": 1.0}})
    gw = four_workers(keys_file)
    assert settles(gw.url, "sk-from-json", 200)
    assert keys_file.read_bytes().startswith(b"SQLite format 3\x00") and private(keys_file)
    assert (tmp_path / "keys.json.migrated.json").exists()


@pytest.mark.parametrize("breakage", ["garbage", "invalid json keys", "foreign sqlite", "directory"])
def test_a_broken_store_refuses_to_start(stub: StubUpstream, tmp_path: Path, breakage: str) -> None:
    keys_file = tmp_path / "keys.json"
    if breakage == "garbage":
        keys_file.write_bytes(b"\x00garbage\xff" * 100)
    elif breakage == "invalid json keys":
        keys_file.write_text('{"keys": {"sk-clear-key-instead-of-a-hash": {"tenant": "a"}}}')
    elif breakage == "foreign sqlite":
        with sqlite3.connect(keys_file) as conn:
            conn.execute("CREATE TABLE other (x)")
        conn.close()
    else:
        keys_file.mkdir()
    config = write_config(tmp_path, gateway_config(stub.url, keys_file=str(keys_file)))
    status, output = run_reprise(["serve", "--config", str(config), "--host", "127.0.0.1", "--port", "0",
                                  "--workers", "4"], timeout=20)
    assert status != 0 and SETTING in output, output
    status, output = run_reprise(["config", "check", "--config", str(config)])
    assert status == 2 and SETTING in output, output


@pytest.mark.parametrize("breakage", ["overwritten", "removed"])
def test_a_store_broken_while_running_never_opens_the_gateway(four_workers: Callable[..., GatewayProcess],
                                                               tmp_path: Path, breakage: str) -> None:
    keys_file = tmp_path / "keys.json"
    gw = four_workers(keys_file, workers=2)
    kept = [generate(gw.url) for _ in range(3)]
    gone = generate(gw.url)
    revoke(gw.url, gone[1])
    assert all(settles(gw.url, k, 200) for k, _ in kept) and settles(gw.url, gone[0], 401)
    time.sleep(0.5)  # a revoke younger than a check interval when the store breaks may not reach every worker
    if breakage == "overwritten":
        keys_file.write_bytes(b"{}")
    else:
        keys_file.unlink()
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # every answer, for longer than a check interval and a retry
        assert all(status_of(gw.url, k) == 200 for k, _ in kept)
        assert status_of(gw.url, gone[0]) == 401
        assert status_of(gw.url, "sk-never-made") == 401
        assert httpx.get(gw.url + "/v1/models", timeout=10).status_code == 401
        assert httpx.get(gw.url + "/key/list", timeout=10).status_code == 401
        r = httpx.post(gw.url + "/key/generate", json={"tenant": "team-a"}, headers=AUTH, timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "key_store_unavailable"
    logged = [line for line in gw.log.splitlines() if f"{SETTING}: cannot read the key store" in line]
    assert 1 <= len(logged) <= 2, logged  # once per worker that noticed
