"""A shared, persistent store in a Google Cloud Storage bucket (LiteLLM's ``type: gcs``).

Each entry is one object, ``{gcs_path}/{key}``
(:class:`~reprise.backends.object_store.ObjectNames`), so the ``x-litellm-cache-key``
header names the object. GCS has no TTL: the deadline is in the object's custom
metadata (``reprise-expires-at``), a read past it is a miss that deletes the object
(only that generation, so a fresh rewrite is never lost), and a bucket lifecycle
rule removes what nobody reads again (docs/object-stores.md).

Why the sync SDK in threads: google-cloud-storage is the official client and is
sync only; it runs in a :class:`~reprise.backends.object_store.BlockingRunner` of
``max_connections`` threads whose HTTP session keeps a pool of as many connections.
Every call has an explicit ``(connect, read)`` timeout and no SDK retry (its
default retries for up to two minutes): a failure is a miss now, and the driver's
fault handling warns once and recovers by itself.

A hit is one request: the object's media download through the SDK's own
authorised session, whose response carries the custom metadata as
``x-goog-meta-*`` headers (as GCS documents for downloads); the SDK's own
``download_as_bytes`` would drop them and need a second request for the deadline.

``STORAGE_EMULATOR_HOST`` is honoured as by the SDK: requests go there,
anonymously, unless a service-account file is configured.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import quote

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from requests import exceptions as req_exc
from requests.adapters import HTTPAdapter

from reprise.backends.base import Capabilities
from reprise.backends.object_store import BlockingRunner, ObjectNames, expiry_meta, is_expired
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from reprise.config.models import GcsCacheParams

PAGE = 1000
"""Objects per list page (GCS's maximum)."""
BATCH = 100
"""Deletes per batch request (GCS's maximum)."""

_SETTINGS = "litellm_settings.cache_params"
_META_HEADER = "x-goog-meta-"
_DEFAULT_ENDPOINT = "https://storage.googleapis.com"


@dataclass(frozen=True, slots=True)
class GcsTarget:
    """Where and how to reach the bucket; built from the config or by hand (tests, library)."""

    bucket: str
    prefix: str | None = None
    service_account_file: str | None = None
    endpoint: str | None = None
    """An emulator's base URL (``STORAGE_EMULATOR_HOST``); None: Google's endpoint."""
    connect_timeout: float = 1.0
    read_timeout: float = 2.0
    max_connections: int = 16


def _classify(exc: BaseException) -> BackendError | None:
    """google-cloud-storage's, google-auth's and requests' exceptions to ours."""
    if isinstance(exc, req_exc.Timeout):
        return BackendTimeout(f"gcs did not answer in time: {exc}", "gcs")
    if isinstance(exc, gexc.GoogleAPICallError | auth_exc.GoogleAuthError | req_exc.RequestException):
        return BackendUnavailable(f"gcs failed: {type(exc).__name__}: {exc}", "gcs")
    return None


class GcsBackend:
    """Entries as objects in one bucket under a prefix; see the module docstring.

    ``clear()`` without a namespace deletes every object under the prefix: give
    Reprise its own bucket or ``gcs_path``.
    """

    name = "gcs"
    capabilities = Capabilities(native_ttl=False, shared=True, persistent=True)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    def __init__(self, target: GcsTarget) -> None:
        self.target = target
        self.names = ObjectNames(target.prefix)
        self._runner = BlockingRunner("gcs", target.max_connections, _classify)
        self._timeout = (target.connect_timeout, target.read_timeout)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_params(cls, params: GcsCacheParams, environ: Mapping[str, str] | None = None) -> Self:
        """Build from ``type: gcs``'s params (LiteLLM's ``gcs_*`` keys)."""
        env = os.environ if environ is None else environ
        return cls(GcsTarget(
            bucket=params.gcs_bucket_name, prefix=params.gcs_path,
            service_account_file=params.gcs_path_service_account,
            endpoint=emulator_endpoint(env.get("STORAGE_EMULATOR_HOST")),
            connect_timeout=params.connect_timeout, read_timeout=params.read_timeout,
            max_connections=params.max_connections,
        ))

    # -- the client (built lazily, in a worker: credential lookup may block) ------------

    def _gcs(self) -> Any:
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = _open_client(self.target)
                client = self._client
        return client

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._runner.run(self._get, self.names.name(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # One GET per key, concurrently; the runner's threads bound how many at once.
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._runner.run(self._set, self.names.name(key), bytes(value), ttl)

    async def delete(self, key: str) -> bool:
        return await self._runner.run(self._delete, self.names.name(key))

    async def clear(self, namespace: str | None = None) -> int:
        prefix = self.names.listing_prefix(namespace)
        removed = 0
        token: str | None = None
        while True:
            page, token = await self._runner.run(self._list_page, prefix, token)
            names = [name for name, _ in page]
            for start in range(0, len(names), BATCH):
                removed += await self._runner.run(self._delete_batch, names[start : start + BATCH])
            if token is None:
                return removed

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        prefix = self.names.listing_prefix(namespace)
        token: str | None = None
        while True:
            page, token = await self._runner.run(self._list_page, prefix, token)
            now = time.time()
            for name, metadata in page:  # a GCS listing carries each object's metadata
                key = self.names.key(name)
                if key is not None and not is_expired(metadata, now):
                    yield key
            if token is None:
                return

    async def aclose(self) -> None:
        """Stop the threads, then close the HTTP session. Idempotent."""
        await self._runner.aclose()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def check(self) -> None:
        """Start-up check: ConfigError for a missing bucket or rejected credentials.

        An unreachable endpoint raises :class:`BackendUnavailable` (an outage: the
        gateway starts and fails open). Reading the bucket needs
        ``storage.buckets.get``; listing and deleting need ``storage.objects.*``.
        """
        try:
            await self._runner.run(self._get_bucket)
        except BackendUnavailable as exc:
            error = _config_error(exc.__cause__, self.target)
            if error is None:
                raise
            raise error from exc.__cause__

    # -- blocking bodies (worker threads) ---------------------------------------------

    def _get(self, name: str) -> bytes | None:
        client = self._gcs()
        response = client._http.get(self._media_url(client, name), timeout=self._timeout)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise gexc.from_http_response(response)  # type: ignore[no-untyped-call]
        metadata = {
            header[len(_META_HEADER) :]: value
            for header, value in response.headers.items()
            if header.lower().startswith(_META_HEADER)
        }
        if is_expired(metadata, time.time()):
            self._delete_generation(name, response.headers.get("x-goog-generation"))  # lazy expiry
            return None
        data: bytes = response.content
        return data

    def _set(self, name: str, value: bytes, ttl: float | None) -> None:
        if ttl is not None and ttl <= 0:
            self._delete_generation(name, None)
            return
        blob = self._gcs().bucket(self.target.bucket).blob(name)
        blob.metadata = expiry_meta(ttl, time.time()) or None
        blob.upload_from_string(value, content_type="application/octet-stream", timeout=self._timeout,
                                retry=None)

    def _delete(self, name: str) -> bool:
        """True if a live object was deleted (an expired one is deleted too, but was a miss)."""
        blob = self._gcs().bucket(self.target.bucket).get_blob(name, timeout=self._timeout, retry=None)
        if blob is None:
            return False
        self._delete_generation(name, blob.generation)
        return not is_expired(blob.metadata, time.time())

    def _delete_generation(self, name: str, generation: Any) -> None:
        """Delete ``name`` (only that generation, when given); absent or replaced is fine."""
        blob = self._gcs().bucket(self.target.bucket).blob(name)
        try:
            blob.delete(if_generation_match=None if generation is None else int(generation),
                        timeout=self._timeout, retry=None)
        except (gexc.NotFound, gexc.PreconditionFailed):
            pass

    def _list_page(self, prefix: str, token: str | None) -> tuple[list[tuple[str, dict[str, str]]], str | None]:
        iterator = self._gcs().list_blobs(self.target.bucket, prefix=prefix, page_size=PAGE, page_token=token,
                                          fields="items(name,metadata),nextPageToken",
                                          timeout=self._timeout, retry=None)
        page = next(iterator.pages, None)
        items = [] if page is None else [(blob.name, blob.metadata or {}) for blob in page]
        return items, iterator.next_page_token

    def _delete_batch(self, names: list[str]) -> int:
        """Delete up to :data:`BATCH` objects in one batch request; how many existed."""
        client = self._gcs()
        bucket = client.bucket(self.target.bucket)
        with client.batch(raise_exception=False) as batch:
            for name in names:
                bucket.delete_blob(name, timeout=self._timeout, retry=None)
        statuses = [response.status_code for response in batch._responses]
        failed = [status for status in statuses if status >= 300 and status != 404]
        if failed:
            raise BackendUnavailable(f"gcs could not delete {len(failed)} objects (HTTP {failed[0]})", "gcs")
        return sum(1 for status in statuses if status < 300)

    def _get_bucket(self) -> None:
        self._gcs().get_bucket(self.target.bucket, timeout=self._timeout, retry=None)

    def _media_url(self, client: Any, name: str) -> str:
        base = (self.target.endpoint or client.api_endpoint or _DEFAULT_ENDPOINT).rstrip("/")
        return f"{base}/download/storage/v1/b/{quote(self.target.bucket, safe='')}/o/{quote(name, safe='')}?alt=media"


def emulator_endpoint(host: str | None) -> str | None:
    """``STORAGE_EMULATOR_HOST`` as a base URL (the SDK accepts it with or without a scheme)."""
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def _open_client(target: GcsTarget) -> Any:
    from google.cloud import storage

    options = {"api_endpoint": target.endpoint} if target.endpoint else None
    if target.service_account_file:
        client = storage.Client.from_service_account_json(target.service_account_file, client_options=options)
    elif target.endpoint:
        from google.auth.credentials import AnonymousCredentials

        anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = storage.Client(project="<none>", credentials=anonymous, client_options=options)
    else:
        # Application default credentials, scoped by the SDK; bucket calls need no project.
        client = storage.Client(project=None)
    # One pooled connection per worker thread, reused across calls.
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=target.max_connections)
    client._http.mount("https://", adapter)
    client._http.mount("http://", adapter)
    return client


def _config_error(cause: BaseException | None, target: GcsTarget) -> ConfigError | None:
    """A setting that will never work, named; None for an outage."""
    if isinstance(cause, gexc.NotFound):
        return ConfigError(f"bucket {target.bucket!r} does not exist (create it first)",
                           f"{_SETTINGS}.gcs_bucket_name")
    if isinstance(cause, gexc.Unauthorized | gexc.Forbidden | auth_exc.DefaultCredentialsError):
        return ConfigError(
            f"GCS refused the credentials for bucket {target.bucket!r} ({cause}); check "
            "gcs_path_service_account (or the application default credentials) and the bucket's IAM",
            f"{_SETTINGS}.gcs_path_service_account",
        )
    if isinstance(cause, OSError | ValueError) and not isinstance(cause, req_exc.RequestException):
        # from_service_account_json: the file is missing or not a service-account key.
        return ConfigError(f"cannot load the service-account file: {cause}", f"{_SETTINGS}.gcs_path_service_account")
    return None
