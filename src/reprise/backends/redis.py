"""A shared store on Redis (LiteLLM's ``type: redis``): standalone, cluster or sentinel.

Keys are exactly the driver's (``{namespace}:{sha256}`` or ``{sha256}``), so
``redis-cli GET <key>`` shows the stored entry; expiry is Redis's own (``SET PX``).
Many gateway instances can share one Redis: what one stores, the others hit.

Every redis-py exception is translated here into :class:`BackendTimeout` (no
answer within ``socket_timeout``) or :class:`BackendUnavailable` (anything else:
refused, reset, auth, cluster down), so the driver fails open. Clients are built
on the first call, never in ``__init__``; redis-py's pools reconnect by themselves
when Redis comes back, and a sentinel-managed pool asks the sentinels for the
current master on each new connection, so a failover is followed without restart.

The backend also implements :class:`~reprise.backends.base.DistributedLock` with
``SET !lock:{key} <token> NX PX``, released only by the token's owner (one Lua
script), so identical misses on several instances make one upstream call.
``!`` is outside the namespace alphabet, so a lock key never collides with an entry
and is left out of :meth:`keys`.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeout

from reprise.backends.base import Backend, Capabilities
from reprise.backends.redis_conn import RedisTarget, open_client, resolve_target
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable

if TYPE_CHECKING:
    from reprise.config.models import RedisCacheParams

LOCK_PREFIX = "!lock:"
WAIT_PREFIX = "!wait:"
"""Marks of processes waiting for a lock holder's answer (:meth:`RedisBackend.note_waiting`)."""
BATCH = 500
"""Keys per MGET, per SCAN page and per UNLINK: bounded commands, bounded replies."""

# Compare-and-delete: a holder whose lock expired must not delete the next holder's.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_FAILURES = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)


def _translate(exc: BaseException) -> BackendError:
    if isinstance(exc, RedisTimeout | TimeoutError):
        return BackendTimeout(f"redis did not answer in time: {exc}", "redis")
    return BackendUnavailable(f"redis failed: {type(exc).__name__}: {exc}", "redis")


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class RedisBackend:
    """Entries in Redis under the driver's keys; see the module docstring.

    ``clear()`` without a namespace removes every key of the database (by SCAN and
    UNLINK, never FLUSHDB): give Reprise its own ``db`` or a ``namespace``.
    """

    name = "redis"
    capabilities = Capabilities(native_ttl=True, shared=True, persistent=True)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    def __init__(self, target: RedisTarget | None = None, *, lock_timeout: float = 10.0,
                 hidden_prefixes: tuple[str, ...] = ()) -> None:
        self.target = target or RedisTarget()
        self.lock_timeout = lock_timeout
        self.hidden_prefixes = (LOCK_PREFIX, WAIT_PREFIX, *hidden_prefixes)
        """Keys that are not entries (locks, redis-semantic's vector documents): left out of keys()."""
        self._client: Any = None
        self._extra_clients: list[Any] = []
        self._closed = False
        self._lock_tokens: dict[str, str] = {}

    @classmethod
    def from_params(cls, params: RedisCacheParams, environ: Mapping[str, str] | None = None, *,
                    hidden_prefixes: tuple[str, ...] = ()) -> Backend:
        """Build from ``type: redis``'s params, with its local tier if on.

        A :class:`Backend` rather than this class: with ``local_tier`` the store is a
        :class:`~reprise.backends.tiered.TieredBackend` in front of it.
        """
        target = resolve_target(params, os.environ if environ is None else environ)
        backend = cls(target, lock_timeout=params.lock_timeout, hidden_prefixes=hidden_prefixes)
        tier = params.front_tier
        if tier is None:
            return backend
        from reprise.backends.memory import MemoryBackend
        from reprise.backends.tiered import TieredBackend

        front = MemoryBackend(max_entries=tier.max_entries, max_bytes=tier.max_bytes)
        return TieredBackend(front, backend, front_ttl=tier.ttl)

    def connection(self) -> Any:
        """The redis-py client (built on first use, no I/O); redis-semantic's vectors share its pool."""
        return self._client or self._redis()

    def _redis(self) -> Any:
        if self._client is None:
            if self._closed:
                raise BackendUnavailable("redis backend is closed", self.name)
            self._client, self._extra_clients = open_client(self.target)
        return self._client

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        client = self._client or self._redis()
        try:
            value: bytes | None = await client.get(key)
        except _FAILURES as exc:
            raise _translate(exc) from exc
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self._redis()
        fetch = client.mget_nonatomic if self.target.mode == "cluster" else client.mget
        found: list[bytes | None] = []
        try:
            for start in range(0, len(keys), BATCH):
                found.extend(await fetch(list(keys[start : start + BATCH])))
        except _FAILURES as exc:
            raise _translate(exc) from exc
        return found

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        client = self._client or self._redis()
        try:
            if ttl is not None and ttl <= 0:
                await client.unlink(key)
            else:
                px = None if ttl is None else max(1, math.ceil(ttl * 1000))
                await client.set(key, value, px=px)
        except _FAILURES as exc:
            raise _translate(exc) from exc

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis().unlink(key))
        except _FAILURES as exc:
            raise _translate(exc) from exc

    async def clear(self, namespace: str | None = None) -> int:
        client = self._redis()
        match = "*" if namespace is None else f"{_glob_escape(namespace)}:*"
        removed = 0
        batch: list[bytes] = []
        try:
            async for key in client.scan_iter(match=match, count=BATCH):
                batch.append(key)
                if len(batch) >= BATCH:
                    removed += await client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await client.unlink(*batch)
        except _FAILURES as exc:
            raise _translate(exc) from exc
        return removed

    async def note_waiting(self, key: str, ttl: float) -> None:
        try:
            await self._redis().set(WAIT_PREFIX + key, b"1", px=max(1, math.ceil(ttl * 1000)))
        except _FAILURES as exc:
            raise _translate(exc) from exc

    async def has_waiters(self, key: str) -> bool:
        try:
            return bool(await self._redis().exists(WAIT_PREFIX + key))
        except _FAILURES as exc:
            raise _translate(exc) from exc

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        client = self._redis()
        match = "*" if namespace is None else f"{_glob_escape(namespace)}:*"
        try:
            async for raw in client.scan_iter(match=match, count=BATCH):
                key = raw.decode("utf-8", "replace")
                if not key.startswith(self.hidden_prefixes):
                    yield key
        except _FAILURES as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        """Close the pools; later calls raise BackendUnavailable. Idempotent."""
        self._closed = True
        client, extras = self._client, self._extra_clients
        self._client, self._extra_clients = None, []
        for each in [*([client] if client is not None else []), *extras]:
            try:
                await each.aclose()
            except _FAILURES:
                pass  # closing a dead connection: nothing left to free

    # -- DistributedLock --------------------------------------------------------------

    async def acquire(self, key: str, ttl: float) -> bool:
        token = secrets.token_hex(8)
        try:
            won = await self._redis().set(LOCK_PREFIX + key, token, nx=True, px=max(1, math.ceil(ttl * 1000)))
        except _FAILURES as exc:
            raise _translate(exc) from exc
        if won:
            self._lock_tokens[key] = token
        return bool(won)

    async def release(self, key: str) -> None:
        token = self._lock_tokens.pop(key, None)
        if token is None:
            return
        try:
            await self._redis().eval(_RELEASE, 1, LOCK_PREFIX + key, token)
        except _FAILURES as exc:
            raise _translate(exc) from exc
