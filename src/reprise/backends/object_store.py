"""What the object-store backends (S3, GCS, Azure Blob) share; see docs/object-stores.md.

**Names.** An entry's object is ``{prefix}/{key}``, the driver's key verbatim
(``{namespace}:{sha256}`` or ``{sha256}``), so an operator finds an entry from the
``x-litellm-cache-key`` response header alone. :class:`ObjectNames` maps both ways
and refuses a key no store accepts (too long, control characters), so the mapping
is the same on the three clouds.

**Expiry.** Object stores have no TTL. Each object carries its own deadline in its
metadata (:data:`EXPIRES_META`, wall-clock seconds; absent: never), written by
``set`` from its ``ttl`` argument. A read of an object past its deadline is a miss,
and the reader deletes it (lazily, as the disk store does); a bucket lifecycle rule
removes what nobody reads again. The core also checks the entry's own expiry, so a
clock that disagrees with the metadata can only shorten a life, never extend it.

**Blocking SDKs.** boto3, google-cloud-storage and azure-storage-blob's sync client
block, so their calls run in a :class:`BlockingRunner`: a bounded thread pool owned
by the backend (its size is also the SDK's connection pool size, so connections
are reused and never more than that are open). The event loop only awaits.

**Failing open.** The runner translates every exception raised in a worker into
the :class:`~reprise.errors.BackendError` family, first with the backend's own
classifier (SDK-specific codes), then with :func:`translate_common` (timeouts,
sockets). The driver does the rest: one warning per outage, a counted fault,
and the recovery line on the next success (:mod:`reprise.cache`).
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from reprise.errors import BackendError, BackendTimeout, BackendUnavailable

T = TypeVar("T")

EXPIRES_META = "reprise-expires-at"
"""Object metadata key holding the wall-clock deadline (seconds since the epoch, as text)."""

MAX_NAME_BYTES = 1024
"""The shortest of the three stores' object-name limits (S3 and GCS: 1024 UTF-8 bytes)."""

Classifier = Callable[[BaseException], BackendError | None]
"""A backend's SDK-specific translation; None when it does not recognise the exception."""


class ObjectNames:
    """``key <-> {prefix}/{key}``: one bucket may hold several caches under different prefixes.

    ``prefix`` is LiteLLM's ``s3_path`` (or its GCS/Azure twin); surrounding slashes
    are dropped, and an empty prefix puts entries at the bucket's root.
    """

    def __init__(self, prefix: str | None = None) -> None:
        clean = (prefix or "").strip("/")
        self.root = f"{clean}/" if clean else ""
        """What every object name of this cache starts with: ``""`` or ``"{prefix}/"``."""

    def name(self, key: str) -> str:
        """The object name of ``key``; BackendError for a key no object store accepts."""
        if not key or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
            raise BackendError(f"cache key {key!r} cannot be an object name", "object-store")
        name = self.root + key
        if len(name.encode()) > MAX_NAME_BYTES:
            raise BackendError(f"object name over {MAX_NAME_BYTES} bytes: {name[:60]}...", "object-store")
        return name

    def key(self, name: str) -> str | None:
        """The cache key of an object name, or None for an object that is not this cache's."""
        if not name.startswith(self.root) or len(name) == len(self.root):
            return None
        return name[len(self.root) :]

    def listing_prefix(self, namespace: str | None = None) -> str:
        """The name prefix that lists every entry (or one namespace's, ``{ns}:``)."""
        return self.root if namespace is None else f"{self.root}{namespace}:"


def expiry_meta(ttl: float | None, now: float) -> dict[str, str]:
    """Metadata to store beside an object written with ``ttl`` seconds to live."""
    if ttl is None or math.isinf(ttl):
        return {}
    return {EXPIRES_META: repr(now + ttl)}


def is_expired(metadata: dict[str, str] | None, now: float) -> bool:
    """True when the metadata's deadline has passed (unreadable metadata: not expired).

    Metadata names are HTTP header names, so case does not count: AWS returns them in
    lower case, but other S3 servers (``rclone serve s3``) return ``Reprise-Expires-At``.
    """
    raw = metadata_value(metadata, EXPIRES_META)
    if raw is None:
        return False
    try:
        return now >= float(raw)
    except ValueError:
        return False


def metadata_value(metadata: dict[str, str] | None, name: str) -> str | None:
    """``metadata[name]``, matching the name without regard to case."""
    if not metadata:
        return None
    value = metadata.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in metadata.items() if k.lower() == wanted), None)


def translate_common(exc: BaseException, backend: str) -> BackendError:
    """Timeouts to :class:`BackendTimeout`, sockets to :class:`BackendUnavailable`, else BackendError."""
    if isinstance(exc, BackendError):
        return exc
    text = f"{backend} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return BackendTimeout(text, backend)
    if isinstance(exc, OSError | ConnectionError):
        return BackendUnavailable(text, backend)
    return BackendError(text, backend)


class BlockingRunner:
    """A bounded thread pool for a sync SDK, translating its errors at the edge.

    ``threads`` bounds both concurrent calls and (when the backend sizes its SDK's
    pool to match) open connections. After :meth:`aclose` every call raises
    :class:`BackendUnavailable`.
    """

    def __init__(self, backend: str, threads: int, classify: Classifier | None = None) -> None:
        if threads < 1:
            raise ValueError("threads must be positive")
        self.backend = backend
        self.threads = threads
        self._classify = classify
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"reprise-{backend}")
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker; any exception comes out as a BackendError."""
        if self._closed:
            raise BackendUnavailable(f"{self.backend} backend is closed", self.backend)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:  # the pool was shut down by a concurrent aclose
            raise BackendUnavailable(f"{self.backend} backend is closed", self.backend) from exc
        try:
            return await future
        except Exception as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: BaseException) -> BackendError:
        """The backend's classifier first, then :func:`translate_common`."""
        if isinstance(exc, BackendError):
            return exc
        mapped = self._classify(exc) if self._classify is not None else None
        return mapped if mapped is not None else translate_common(exc, self.backend)

    async def aclose(self) -> None:
        """Let running calls finish (off the loop), then stop the threads. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, True)
