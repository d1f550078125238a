"""Who is calling: the master key, or a virtual key that belongs to a tenant.

Keys are only ever held as sha256 digests: the config's clear keys are hashed at load,
and keys created through ``/key/generate`` are written to ``keys_file`` hashed. A
presented key is hashed and looked up; the match is confirmed with
``hmac.compare_digest``. The master key is compared in constant time (``hmac.compare_digest``). Keys created by
another worker process are picked up by re-reading ``keys_file`` when it changes
(checked at most once a second), which also bounds how long a revoked key lingers.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprise.config.tenancy import KeyCacheDefaults, VirtualKeyConfig
from reprise.errors import AuthError, RequestError

RELOAD_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller. ``tenant`` None means the master key (or an open gateway)."""

    tenant: str | None
    is_master: bool
    key_id: str  # first 12 hex of the key's sha256, safe to log
    defaults: KeyCacheDefaults | None = None


MASTER = Principal(tenant=None, is_master=True, key_id="master")
OPEN = Principal(tenant=None, is_master=False, key_id="none")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """Virtual keys by digest: from the config (fixed) and from ``keys_file`` (managed)."""

    def __init__(self, configured: list[VirtualKeyConfig], keys_file: str | None) -> None:
        self._configured = {vk.digest: _principal(vk.digest, vk.tenant, vk.cache) for vk in configured}
        self._file = Path(keys_file) if keys_file else None
        self._managed: dict[str, Principal] = {}
        self._file_mtime: float | None = None
        self._checked = 0.0
        self._maybe_reload(force=True)

    def __len__(self) -> int:
        return len(self._configured) + len(self._managed)

    def lookup(self, key: bytes) -> Principal | None:
        self._maybe_reload()
        # Lookup by digest: timing can only reveal facts about the hash, never the key.
        found = hashlib.sha256(key).hexdigest()
        return self._configured.get(found) or self._managed.get(found)

    def _maybe_reload(self, force: bool = False) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_INTERVAL:
            return
        self._checked = now
        try:
            mtime = self._file.stat().st_mtime
        except FileNotFoundError:
            self._managed, self._file_mtime = {}, None
            return
        if mtime != self._file_mtime:
            self._managed = {d: _principal(d, row["tenant"], _defaults(row)) for d, row in self._read().items()}
            self._file_mtime = mtime

    def _read(self) -> dict[str, dict[str, Any]]:
        if self._file is None:  # no keys_file: no managed keys (``/key/delete`` must not fail)
            return {}
        try:
            data = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        return data.get("keys", {}) if isinstance(data, dict) else {}

    def _write(self, rows: dict[str, dict[str, Any]]) -> None:
        assert self._file is not None
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"keys": rows}, indent=1))
        os.replace(tmp, self._file)  # atomic: readers see the old or the new file
        self._maybe_reload(force=True)

    def generate(self, tenant: str, cache: dict[str, Any] | None) -> tuple[str, str]:
        """Create a key for ``tenant``; return (key, digest). The clear key is never stored."""
        if self._file is None:
            raise RequestError("set general_settings.keys_file to create keys through the API", code="not_supported")
        defaults = KeyCacheDefaults.model_validate(cache or {})
        key = "sk-rp-" + secrets.token_urlsafe(24)
        rows = self._read()
        rows[digest(key)] = {"tenant": tenant, "cache": defaults.model_dump(exclude_none=True), "created": time.time()}
        self._write(rows)
        return key, digest(key)

    def revoke(self, digests: list[str]) -> int:
        rows = self._read()
        fixed = [d for d in digests if d in self._configured]
        if fixed:
            raise RequestError("keys defined in the config file cannot be revoked through the API", param="keys")
        removed = [d for d in digests if rows.pop(d, None) is not None]
        if removed and self._file is not None:
            self._write(rows)
        return len(removed)

    def describe(self) -> list[dict[str, Any]]:
        self._maybe_reload(force=True)
        return [
            {"key_id": p.key_id, "tenant": p.tenant, "source": source}
            for source, table in (("config", self._configured), ("keys_file", self._managed))
            for p in table.values()
        ]


def _defaults(row: dict[str, Any]) -> KeyCacheDefaults | None:
    cache = row.get("cache")
    return KeyCacheDefaults.model_validate(cache) if cache else None


def _principal(key_digest: str, tenant: str, defaults: KeyCacheDefaults | None) -> Principal:
    return Principal(tenant=tenant, is_master=False, key_id=key_digest[:12], defaults=defaults)


def bearer_token(authorization: bytes | None) -> bytes:
    if not authorization or authorization[:7].lower() != b"bearer ":
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    return authorization[7:].strip()
