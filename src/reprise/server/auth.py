"""Who is calling: the master key, or a virtual key that belongs to a tenant.

Keys are only ever held as sha256 digests: the config's clear keys are hashed at load,
and keys created through ``/key/generate`` are stored hashed in ``keys_file`` (a SQLite
store shared by every worker process, :mod:`reprise.server.key_store`). A presented
key is hashed and looked up, so timing can only reveal facts about the hash; the master
key is compared in constant time (``hmac.compare_digest``).

A lookup reads a dict and nothing else: no I/O on the event loop. A watcher thread per
process keeps that dict current: every :data:`CHECK_INTERVAL` it asks the store whether
another process committed (``PRAGMA data_version``, a few µs) and, if so, reads only
the rows that changed, then swaps in a new dict. A key generated or revoked by any
worker works, or stops working, everywhere within that interval, idle workers included;
on the worker that made the change, before its answer is sent.

The store fails closed. One that cannot be opened stops the start-up
(``ConfigError`` naming ``general_settings.keys_file``; ``reprise serve`` opens it once
before any worker starts, and each worker when it builds its gateway). One that breaks
later (unreadable, overwritten, removed or replaced) leaves the last keys read in force,
with an error logged once, until it can be read again (a replaced file is read only
after a restart); it never empties the key set, so it
never opens the gateway, and generate, revoke and list answer 503 meanwhile rather
than claim a change they could not make.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from reprise.config.tenancy import KeyCacheDefaults, VirtualKeyConfig, _check_sha256, _check_tenant
from reprise.errors import AuthError, ConfigError, RequestError, ServiceUnavailable
from reprise.server.key_store import Changes, KeyFile
from reprise.server.key_store_file import SETTING, KeyFileError

log = logging.getLogger("reprise.server")

CHECK_INTERVAL = 0.1
"""Seconds between two checks of the store for other processes' changes."""
RETRY_INTERVAL = 1.0
"""Seconds between two attempts to read a store that failed."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. ``tenant`` None means the master key (or an open gateway)."""

    tenant: str | None
    is_master: bool
    key_id: str  # first 12 hex of the key's sha256, safe to log
    defaults: KeyCacheDefaults | None = None
    max_parallel: int | None = None
    """Requests this key may have in progress at once; None: no limit (the master key, an open gateway)."""


MASTER = Principal(tenant=None, is_master=True, key_id="master")
OPEN = Principal(tenant=None, is_master=False, key_id="none")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Virtual keys by digest: from the config (fixed) and from ``keys_file`` (managed).

    The store is opened, and its watcher started, when this is built (ConfigError if it
    cannot be: refuse to start): every worker must hold the keys before it serves, or it
    would have none to keep if the store broke later. (That belongs in ``Gateway.open``;
    :meth:`open` is idempotent for when it moves there.) :meth:`lookup` and ``len`` run
    on the event loop and never touch the store; :meth:`generate`, :meth:`revoke` and
    :meth:`describe` are the admin API's and do their I/O in worker threads.
    """

    def __init__(self, configured: list[VirtualKeyConfig], keys_file: str | None,
                 max_parallel: int | None = None) -> None:
        self._max_parallel = max_parallel
        self._configured = {
            vk.digest: _principal(vk.digest, vk.tenant, vk.cache, vk.max_parallel_requests or max_parallel)
            for vk in configured
        }
        self._file = KeyFile(keys_file) if keys_file else None
        self._managed: dict[str, Principal] = {}
        """Replaced, never changed in place: the event loop reads it while the watcher works."""
        self._lock = threading.Lock()  # the store's reader and every replacement of _managed
        self._opened = self._file is None
        self._stop = threading.Event()
        self._failure: str | None = None
        """Why the store cannot be read now (logged once); None while it can."""
        self.open()

    def open(self) -> None:
        """Open the store, read its keys, start the watcher; ConfigError if it cannot be used. Idempotent."""
        with self._lock:
            if self._opened or self._file is None:
                return
            self._file.open()
            try:
                self._apply(self._file.changes())
            except KeyFileError as exc:
                self._file.close()
                raise ConfigError(f"cannot read the key store {self._file.path}: {exc}", SETTING) from None
            self._opened = True
            self._stop.clear()
            watcher = threading.Thread(target=_watch, args=(weakref.ref(self), self._stop),
                                       name="reprise-key-store", daemon=True)
            watcher.start()

    def close(self) -> None:
        """Stop the watcher and close the store; managed keys then answer 503 (closed, never open)."""
        self._stop.set()
        with self._lock:
            if self._file is not None:
                self._opened = False
                self._file.close()

    def __len__(self) -> int:
        return len(self._configured) + len(self._managed)

    @property
    def in_use(self) -> bool:
        """Whether keys are configured at all (an empty ``keys_file`` counts): then a key is always required."""
        return bool(self._configured) or self._file is not None

    def lookup(self, key: bytes) -> Principal | None:
        found = hashlib.sha256(key).hexdigest()
        principal = self._configured.get(found)
        if principal is None and self._file is not None:
            if not self._opened:
                raise _unavailable("the key store is closed")
            principal = self._managed.get(found)
        return principal

    # -- the admin API ------------------------------------------------------------------

    async def generate(self, tenant: str, cache: dict[str, Any] | None) -> tuple[str, str]:
        """Create a key for ``tenant``; return (key, digest) once it is committed and works
        on this worker. The clear key is never stored."""
        defaults = KeyCacheDefaults.model_validate(cache or {})
        file = await self._writable()
        key = "sk-rp-" + secrets.token_urlsafe(24)
        key_digest = digest(key)
        await asyncio.to_thread(self._insert, file, key_digest, tenant, defaults.model_dump(exclude_none=True))
        return key, key_digest

    async def revoke(self, digests: list[str]) -> int:
        """Revoke managed keys by digest; the number that were live. Config keys cannot be revoked here."""
        if any(d in self._configured for d in digests):
            raise RequestError("keys defined in the config file cannot be revoked through the API", param="keys")
        if self._file is None:  # no keys_file: no managed keys (``/key/delete`` must not fail)
            return 0
        file = await self._writable()
        return await asyncio.to_thread(self._revoke, file, digests)

    async def describe(self) -> list[dict[str, Any]]:
        if self._file is not None:
            await self._writable()
        return [
            {"key_id": p.key_id, "tenant": p.tenant, "source": source}
            for source, table in (("config", self._configured), ("keys_file", self._managed))
            for p in table.values()
        ]

    async def _writable(self) -> KeyFile:
        """The store, up to date; 503 if it cannot be read (a change must not act on stale keys)."""
        if self._file is None:
            raise RequestError("set general_settings.keys_file to create keys through the API", code="not_supported")
        await asyncio.to_thread(self.refresh)
        if not self._opened or self._failure is not None:
            raise _unavailable(self._failure or "the key store is closed")
        return self._file

    def _insert(self, file: KeyFile, key_digest: str, tenant: str, cache: dict[str, Any]) -> None:
        try:
            file.insert(key_digest, tenant, cache or None)
        except KeyFileError as exc:
            raise _unavailable(str(exc)) from None
        self.refresh()  # the key works on this worker before its answer is sent

    def _revoke(self, file: KeyFile, digests: list[str]) -> int:
        try:
            count = file.revoke(digests)
        except KeyFileError as exc:
            raise _unavailable(str(exc)) from None
        gone = set(digests)
        with self._lock:  # at once: a revoked key must not work here even if the store fails from now on
            self._managed = {d: p for d, p in self._managed.items() if d not in gone}
        self.refresh()
        return count

    # -- keeping up with other processes (the watcher's thread, or a worker thread) ------

    def refresh(self) -> None:
        """Catch up with every process's changes; a failing store keeps the last good keys. Blocking."""
        with self._lock:
            file = self._file
            if file is None or not self._opened:
                return
            try:
                if file.moved():  # reopening another file under a live WAL could pair it with the old -wal
                    raise KeyFileError(f"{file.path} was removed or replaced while running; restart to use a new one")
                if file.changed():
                    self._apply(file.changes())
            except KeyFileError as exc:
                if self._failure is None:
                    log.error("%s: cannot read the key store (%s); the last %d keys read stay in force until it can",
                              SETTING, exc, len(self._managed))
                self._failure = str(exc)
                return
            if self._failure is not None:
                log.warning("%s: the key store can be read again (%d managed keys)", SETTING, len(self._managed))
                self._failure = None

    def _apply(self, changes: Changes) -> None:
        table = {} if changes.full else dict(self._managed)
        for row in changes.rows:
            table.pop(row.digest, None)
            if row.revoked:
                continue
            try:
                _check_sha256(row.digest)
                _check_tenant(row.tenant)
                defaults = KeyCacheDefaults.model_validate(row.cache) if row.cache else None
            except ValueError:  # edited by hand: that key does not work (closed), the others do
                log.error("%s: key %s has an invalid tenant or cache; it is refused", SETTING, row.digest[:12])
                continue
            table[row.digest] = _principal(row.digest, row.tenant, defaults, self._max_parallel)
        self._managed = table

    @property
    def _interval(self) -> float:
        return CHECK_INTERVAL if self._failure is None else RETRY_INTERVAL


def _watch(store_ref: weakref.ref[KeyStore], stop: threading.Event) -> None:
    """The watcher: refresh a store until it is closed or collected (it holds no strong reference)."""
    interval = CHECK_INTERVAL
    while not stop.wait(interval):
        store = store_ref()
        if store is None:
            return
        try:
            store.refresh()
        except Exception:  # never die: a dead watcher would freeze the keys silently
            log.exception("%s: the key store's watcher failed; retrying", SETTING)
        interval = store._interval
        del store


def _unavailable(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"the key store cannot be used: {reason}", code="key_store_unavailable")


def _principal(key_digest: str, tenant: str, defaults: KeyCacheDefaults | None,
               max_parallel: int | None) -> Principal:
    return Principal(tenant=tenant, is_master=False, key_id=key_digest[:12], defaults=defaults,
                     max_parallel=max_parallel)


def bearer_token(authorization: bytes | None) -> bytes:
    if not authorization or authorization[:7].lower() != b"bearer ":
        raise AuthError(MISSING_KEY, code="invalid_api_key")
    return authorization[7:].strip()


MISSING_KEY = "missing API key: send 'Authorization: Bearer <key>' (or an 'x-api-key' or 'api-key' header)"
KEY_HEADERS = (b"x-api-key", b"api-key")
"""Where clients other than OpenAI's put the key, as LiteLLM accepts them: the Anthropic
SDK sends ``x-api-key``, the Azure OpenAI SDK ``api-key``."""
CREDENTIAL_HEADERS = frozenset({b"authorization", *KEY_HEADERS})


def credential_headers(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """The request's credential headers by (lowercase, as ASGI gives them) name; 400 if one is repeated.

    Two ``Authorization`` headers (or two ``x-api-key``, two ``api-key``) are ambiguous:
    a proxy in front may check one and this gateway another. They are refused
    (``duplicate_credentials``, ``param`` the header) before any key is looked at, rather
    than letting the first win. One pass over the header list, a set lookup per header."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in CREDENTIAL_HEADERS:
            if name in found:
                label = name.decode("latin-1")
                raise RequestError(f"the {label!r} header is sent more than once; send one credential",
                                   param=label, code="duplicate_credentials")
            found[name] = bytes(value)
    return found


def presented_key(credentials: dict[bytes, bytes]) -> bytes:
    """The key a caller presents (``credentials`` from :func:`credential_headers`):
    ``Authorization: Bearer`` first, else ``x-api-key``, else ``api-key``.

    Checked in that order so one request carrying several is judged by its bearer token
    alone (no header can smuggle a second guess past a wrong one). A present ``Authorization``
    header is the credential even when empty (found from outside: an empty one beside a valid
    ``x-api-key`` was passed over, while a proxy in front reading it sees an anonymous caller)."""
    authorization = credentials.get(b"authorization")
    if authorization is not None:
        return bearer_token(authorization)
    for name in KEY_HEADERS:
        value = credentials.get(name, b"").strip()
        if value:
            return value
    raise AuthError(MISSING_KEY, code="invalid_api_key")
