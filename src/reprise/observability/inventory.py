"""What is in a cache store: ping, list, describe, delete and flush, for any backend.

The admin API (``/cache/...``) and the ``reprise cache`` command both sit on these
functions, so both show an entry the same way. They use only the
:class:`~reprise.backends.base.Backend` protocol; a store that cannot do an
operation (a future backend whose ``keys`` raises ``NotImplementedError``) is
reported as :class:`Unsupported` (HTTP 501), a failing one as
:class:`StoreUnavailable` (503), both in OpenAI's error JSON.

Listing "recent" entries has to read them: keys carry no time. At most ``scan``
keys are read (in batches), and the answer says whether that covered the store.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from typing import Any

import orjson

from reprise.backends.base import Backend, namespace_of
from reprise.core.entry import EntryFormatError, decode_entry
from reprise.errors import BackendError, ServiceUnavailable, Unsupported

BATCH = 100
PROBE_NAMESPACE = "__reprise_ping__"
BODY_LIMIT = 64 * 1024  # bytes of the stored answer shown by describe(..., body=True)

Progress = Callable[[int, int | None], None]
"""Called as ``progress(done, total)``; ``total`` is None while unknown."""
HitCount = Callable[[str], int]


class StoreUnavailable(ServiceUnavailable):
    """The cache store failed while serving an admin request."""


def _no_hits(key: str) -> int:
    return 0


async def ping(backend: Backend) -> dict[str, Any]:
    """A set + get + delete round trip of a probe key (LiteLLM's ``/cache/ping`` shape)."""
    key = f"{PROBE_NAMESPACE}:{os.urandom(8).hex()}"
    started = time.perf_counter()
    try:
        await backend.set(key, b"ping", 10.0)
        echoed = await backend.get(key)
        await backend.delete(key)
    except BackendError as exc:
        raise StoreUnavailable(f"cache backend {backend.name!r} is unhealthy: {exc}", code="cache_unhealthy") from exc
    caps = backend.capabilities
    return {
        "status": "healthy" if echoed == b"ping" else "unhealthy",
        "cache_type": backend.name,
        "ping_response": echoed == b"ping",
        "set_cache_response": "success",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        "capabilities": {"native_ttl": caps.native_ttl, "shared": caps.shared, "persistent": caps.persistent},
    }


async def iter_keys(backend: Backend, namespace: str | None) -> AsyncGenerator[str, None]:
    """The store's keys, translating "cannot list" and store failures into admin errors."""
    try:
        async with aclosing(backend.keys(namespace)) as keys:  # type: ignore[type-var]
            async for key in keys:
                if not key.startswith(PROBE_NAMESPACE + ":"):
                    yield key
    except (NotImplementedError, AttributeError) as exc:
        raise Unsupported(f"cache backend {backend.name!r} cannot list its keys", code="not_supported") from exc
    except BackendError as exc:
        raise StoreUnavailable(f"cache backend {backend.name!r} failed: {exc}", code="cache_unhealthy") from exc


async def read_raw(backend: Backend, keys: Sequence[str]) -> list[bytes | None]:
    try:
        return await backend.get_many(keys)
    except BackendError as exc:
        raise StoreUnavailable(f"cache backend {backend.name!r} failed: {exc}", code="cache_unhealthy") from exc


def describe(key: str, raw: bytes, now: float, hits: HitCount = _no_hits, body: bool = False) -> dict[str, Any] | None:
    """An entry as the admin views show it, or None when it is expired or not an entry."""
    try:
        entry = decode_entry(raw)
    except EntryFormatError:
        return None
    if entry.is_expired(now):
        return None
    meta = entry.meta
    ttl = entry.ttl_left(now)
    view: dict[str, Any] = {
        "key": key,
        "namespace": namespace_of(key),
        "kind": meta.get("kind"),
        "model": meta.get("model"),
        "preview": meta.get("preview"),
        "usage": meta.get("usage"),
        "created_at": entry.created_at,
        "age_s": round(entry.age(now), 3),
        "ttl_left_s": None if ttl is None else round(ttl, 3),
        "size_bytes": len(raw),
        "hit_count": hits(key),
    }
    if body:
        shown = bytes(entry.body[:BODY_LIMIT])
        try:
            view["body"] = orjson.loads(shown)
        except orjson.JSONDecodeError:
            view["body"] = shown.decode("utf-8", "replace")
        view["body_truncated"] = len(entry.body) > BODY_LIMIT
    return view


async def recent_entries(backend: Backend, namespace: str | None, limit: int, scan: int,
                         hits: HitCount = _no_hits, now: float | None = None) -> dict[str, Any]:
    """The ``limit`` newest live entries among the first ``scan`` keys of the store."""
    now = time.time() if now is None else now
    views: list[dict[str, Any]] = []
    batch: list[str] = []
    scanned = 0
    complete = True
    async with aclosing(iter_keys(backend, namespace)) as keys:
        async for key in keys:
            if scanned >= scan:
                complete = False
                break
            scanned += 1
            batch.append(key)
            if len(batch) == BATCH:
                views += await _describe_batch(backend, batch, now, hits)
                batch = []
    if batch:
        views += await _describe_batch(backend, batch, now, hits)
    views.sort(key=lambda v: v["created_at"], reverse=True)
    return {"entries": views[:limit], "scanned": scanned, "complete": complete, "backend": backend.name}


async def _describe_batch(backend: Backend, keys: list[str], now: float, hits: HitCount) -> list[dict[str, Any]]:
    views = []
    for key, raw in zip(keys, await read_raw(backend, keys), strict=True):
        view = describe(key, raw, now, hits) if raw is not None else None
        if view is not None:
            views.append(view)
    return views


async def entry(backend: Backend, key: str, hits: HitCount = _no_hits) -> dict[str, Any] | None:
    """One entry with its stored answer, or None if absent or expired."""
    raw = (await read_raw(backend, [key]))[0]
    return describe(key, raw, time.time(), hits, body=True) if raw is not None else None


async def delete_keys(backend: Backend, keys: Sequence[str]) -> int:
    """Delete the given keys; return how many existed."""
    try:
        return sum([await backend.delete(key) for key in keys])
    except BackendError as exc:
        raise StoreUnavailable(f"cache backend {backend.name!r} failed: {exc}", code="cache_unhealthy") from exc


async def flush(backend: Backend, namespace: str | None, progress: Progress | None = None) -> int:
    """Remove every entry (or one namespace's); return how many.

    Without ``progress`` this is one ``clear`` call, the store's fastest way. With it,
    keys are deleted in batches so a long flush reports as it goes; a final ``clear``
    catches entries written meanwhile.
    """
    try:
        if progress is None:
            return await backend.clear(namespace)
        keys = [key async for key in iter_keys(backend, namespace)]
        done = 0
        progress(0, len(keys))
        for start in range(0, len(keys), BATCH * 5):
            done += await delete_keys(backend, keys[start : start + BATCH * 5])
            progress(min(start + BATCH * 5, len(keys)), len(keys))
        return done + await backend.clear(namespace)
    except BackendError as exc:
        raise StoreUnavailable(f"cache backend {backend.name!r} failed: {exc}", code="cache_unhealthy") from exc


async def summarize(backend: Backend, namespace: str | None, progress: Progress | None = None) -> dict[str, Any]:
    """Live entries, payload bytes and counts by namespace, kind and model (reads every entry)."""
    now = time.time()
    summary: dict[str, Any] = {"backend": backend.name, "entries": 0, "bytes": 0,
                               "namespaces": {}, "kinds": {}, "models": {}}
    batch: list[str] = []

    async def take(keys: list[str]) -> None:
        for key, raw in zip(keys, await read_raw(backend, keys), strict=True):
            view = describe(key, raw, now) if raw is not None else None
            if view is None:
                continue
            summary["entries"] += 1
            summary["bytes"] += view["size_bytes"]
            for field, value in (("namespaces", view["namespace"]), ("kinds", view["kind"]), ("models", view["model"])):
                name = str(value) if value is not None else "-"
                summary[field][name] = summary[field].get(name, 0) + 1
        if progress is not None:
            progress(summary["entries"], None)

    async for key in iter_keys(backend, namespace):
        batch.append(key)
        if len(batch) == BATCH * 5:
            await take(batch)
            batch = []
    if batch:
        await take(batch)
    if progress is not None:
        progress(summary["entries"], summary["entries"])
    return summary
