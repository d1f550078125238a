"""A shared, persistent store in an Azure Blob Storage container (LiteLLM's ``type: azure-blob``).

Each entry is one block blob, ``{azure_path}/{key}``
(:class:`~reprise.backends.object_store.ObjectNames`), so the ``x-litellm-cache-key``
header names the blob. Blob storage has no TTL: the deadline is in the blob's
metadata (``reprise_expires_at``: Azure metadata names must be C# identifiers, so
the shared ``reprise-expires-at`` is spelled with underscores here), a read past it
is a miss that deletes the blob (only if unchanged, by ETag), and a lifecycle
management policy removes what nobody reads again (docs/object-stores.md).

Why the async SDK: ``azure.storage.blob.aio`` runs on aiohttp, which Reprise
already depends on, so no thread is needed; one aiohttp session with a connector
of ``max_connections`` bounds concurrency and reuses connections. A download
returns the metadata with the body, so a hit is one request. Timeouts are
explicit (``connect_timeout``, ``read_timeout``) with one retry.

Credentials, as the issue and LiteLLM have them: ``azure_connection_string`` (or the
``AZURE_STORAGE_CONNECTION_STRING`` environment variable) wins; otherwise
``azure_account_url`` with ``DefaultAzureCredential`` from azure-identity, imported
only then. Every SDK exception is translated here into the BackendError family.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.blob.aio import LinearRetry as AsyncLinearRetry

from reprise.backends.base import Capabilities
from reprise.backends.object_store import EXPIRES_META, ObjectNames, expiry_meta, is_expired
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from reprise.config.models import AzureBlobCacheParams

EXPIRES = "reprise_expires_at"
"""The blob metadata name holding the deadline (wall-clock seconds since the epoch)."""
PAGE = 5000
"""Blobs per list page (Azure's maximum)."""
BATCH = 256
"""Deletes per blob batch request (Azure's maximum)."""

_SETTINGS = "litellm_settings.cache_params"
_BODY_LIMIT = 2**20
_SDK_LOG = logging.getLogger("reprise.backends.azure_blob.sdk")
_SDK_LOG.setLevel(logging.WARNING)
_GONE = (ResourceNotFoundError, ResourceModifiedError)


@dataclass(frozen=True, slots=True)
class AzureBlobTarget:
    """Where and how to reach the container; built from the config or by hand (tests, library)."""

    container: str
    account_url: str | None = None
    connection_string: str | None = None
    prefix: str | None = None
    connect_timeout: float = 1.0
    read_timeout: float = 2.0
    max_connections: int = 16


def _translate(exc: BaseException) -> BackendError:
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError | TimeoutError):
        return BackendTimeout(f"azure-blob did not answer in time: {exc}", "azure-blob")
    return BackendUnavailable(f"azure-blob failed: {type(exc).__name__}: {exc}", "azure-blob")


@contextmanager
def _translated() -> Iterator[None]:
    """Every SDK, aiohttp or socket failure inside becomes a BackendError."""
    try:
        yield
    except BackendError:
        raise
    except (TimeoutError, AzureError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise _translate(exc) from exc


def _metadata(ttl: float | None, now: float) -> dict[str, str]:
    deadline = expiry_meta(ttl, now).get(EXPIRES_META)
    return {} if deadline is None else {EXPIRES: deadline}


def _expired(metadata: Mapping[str, str] | None, now: float) -> bool:
    deadline = (metadata or {}).get(EXPIRES)
    return deadline is not None and is_expired({EXPIRES_META: deadline}, now)


class AzureBlobBackend:
    """Entries as blobs in one container under a prefix; see the module docstring.

    ``clear()`` without a namespace deletes every blob under the prefix: give
    Reprise its own container or ``azure_path``.
    """

    name = "azure-blob"
    capabilities = Capabilities(native_ttl=False, shared=True, persistent=True)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    def __init__(self, target: AzureBlobTarget) -> None:
        if not target.connection_string and not target.account_url:
            raise ConfigError("set azure_connection_string (or AZURE_STORAGE_CONNECTION_STRING) "
                              "or azure_account_url", f"{_SETTINGS}.azure_account_url")
        if target.connection_string:
            _check_connection_string(target.connection_string)
        elif importlib.util.find_spec("azure.identity") is None:
            raise ConfigError("azure_account_url without a connection string needs azure-identity "
                              "(DefaultAzureCredential): pip install 'reprise[azure]'",
                              f"{_SETTINGS}.azure_account_url")
        self.target = target
        self.names = ObjectNames(target.prefix)
        self._service: BlobServiceClient | None = None
        self._container: ContainerClient | None = None
        self._credential: Any = None
        self._closed = False

    @classmethod
    def from_params(cls, params: AzureBlobCacheParams, environ: Mapping[str, str] | None = None) -> Self:
        """Build from ``type: azure-blob``'s params (LiteLLM's ``azure_*`` keys)."""
        env = os.environ if environ is None else environ
        secret = params.azure_connection_string
        connection_string = secret.get_secret_value() if secret is not None else None
        return cls(AzureBlobTarget(
            container=params.azure_blob_container, account_url=params.azure_account_url,
            connection_string=connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING") or None,
            prefix=params.azure_path, connect_timeout=params.connect_timeout,
            read_timeout=params.read_timeout, max_connections=params.max_connections,
        ))

    def _client(self) -> ContainerClient:
        """The container client, built on first use (in the loop: aiohttp needs one)."""
        if self._container is not None:
            return self._container
        if self._closed:
            raise BackendUnavailable("azure-blob backend is closed", self.name)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.target.max_connections))
        options: dict[str, Any] = {
            "transport": AioHttpTransport(session=session, session_owner=True),
            "connection_timeout": self.target.connect_timeout, "read_timeout": self.target.read_timeout,
            # The storage SDK's own retry waits 15 s before retrying: one immediate retry instead.
            "retry_policy": AsyncLinearRetry(backoff=0, random_jitter_range=0, retry_total=1),
            # The SDK logs every request's headers at INFO: only its warnings, on our logger.
            "logger": _SDK_LOG,
            # aiohttp warns that a raw body over 1 MiB may hold the loop: larger entries
            # (rare for chat answers) go up as 1 MiB blocks and one commit instead.
            "max_single_put_size": _BODY_LIMIT, "max_block_size": _BODY_LIMIT,
        }
        if self.target.connection_string:
            service = BlobServiceClient.from_connection_string(self.target.connection_string, **options)
        else:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
            service = BlobServiceClient(str(self.target.account_url), credential=self._credential, **options)
        self._service = service
        self._container = service.get_container_client(self.target.container)
        return self._container

    # -- Backend protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        name = self.names.name(key)
        container = self._client()
        with _translated():
            try:
                download = await container.download_blob(name)
                data: bytes = await download.readall()
            except ResourceNotFoundError:
                return None
            if _expired(download.properties.metadata, time.time()):
                await self._delete_unchanged(name, download.properties.etag)  # lazy expiry
                return None
        return data

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # One GET per key, concurrently; the connector's limit bounds how many at once.
        return list(await asyncio.gather(*(self.get(key) for key in keys)))

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        name = self.names.name(key)
        container = self._client()
        with _translated():
            if ttl is not None and ttl <= 0:
                await self._delete_unchanged(name, None)
                return
            await container.upload_blob(name, bytes(value), overwrite=True, metadata=_metadata(ttl, time.time()))

    async def delete(self, key: str) -> bool:
        name = self.names.name(key)
        blob = self._client().get_blob_client(name)
        with _translated():
            try:
                properties = await blob.get_blob_properties()
            except ResourceNotFoundError:
                return False
            await self._delete_unchanged(name, properties.etag)
        return not _expired(properties.metadata, time.time())

    async def clear(self, namespace: str | None = None) -> int:
        removed = 0
        names: list[str] = []
        async for name, _ in self._list(self.names.listing_prefix(namespace)):
            names.append(name)
            if len(names) == BATCH:
                removed += await self._delete_batch(names)
                names = []
        if names:
            removed += await self._delete_batch(names)
        return removed

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        async for name, metadata in self._list(self.names.listing_prefix(namespace)):
            key = self.names.key(name)
            if key is not None and not _expired(metadata, time.time()):
                yield key

    async def aclose(self) -> None:
        """Close the HTTP session (and the credential); later calls raise BackendUnavailable."""
        self._closed = True
        service, credential = self._service, self._credential
        self._service = self._container = self._credential = None
        with _translated():
            if service is not None:
                await service.close()
            if credential is not None:
                await credential.close()

    async def check(self) -> None:
        """Start-up check: ConfigError for a missing container or rejected credentials.

        An unreachable endpoint raises :class:`BackendUnavailable` (an outage: the
        gateway starts and fails open).
        """
        container = self._client()
        try:
            await container.get_container_properties()
        except ResourceNotFoundError as exc:
            raise ConfigError(f"container {self.target.container!r} does not exist (create it first)",
                              f"{_SETTINGS}.azure_blob_container") from exc
        except HttpResponseError as exc:
            # 403 AuthorizationFailure/AuthenticationFailed: a wrong key, SAS or role.
            if not isinstance(exc, ClientAuthenticationError) and exc.status_code not in (401, 403):
                raise _translate(exc) from exc
            where = "azure_connection_string" if self.target.connection_string else "azure_account_url"
            raise ConfigError(
                f"Azure refused the credentials for container {self.target.container!r} "
                f"({getattr(exc, 'error_code', None) or exc.reason or type(exc).__name__}); check {where} "
                "(or DefaultAzureCredential's sources and the 'Storage Blob Data Contributor' role)",
                f"{_SETTINGS}.{where}",
            ) from exc
        except (TimeoutError, AzureError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc) from exc

    # -- helpers ----------------------------------------------------------------------

    async def _list(self, prefix: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
        container = self._client()
        with _translated():
            blobs = container.list_blobs(name_starts_with=prefix or None, include=["metadata"],
                                         results_per_page=PAGE)
            async for blob in blobs:
                yield blob.name, dict(blob.metadata or {})

    async def _delete_unchanged(self, name: str, etag: str | None) -> None:
        """Delete ``name`` (only if still at ``etag``, when given); absent or replaced is fine."""
        container = self._client()
        try:
            if etag is None:
                await container.delete_blob(name)
            else:
                await container.delete_blob(name, etag=etag, match_condition=MatchConditions.IfNotModified)
        except _GONE:
            pass

    async def _delete_batch(self, names: list[str]) -> int:
        """One blob batch request; parts not confirmed with a 2xx are redone one by one.

        Azurite answers a blob batch with one 400 for the whole request, so on the
        emulator every name takes the one-by-one path; Azure answers each part.
        """
        container = self._client()
        with _translated():
            responses = await container.delete_blobs(*names, raise_on_any_failure=False)
            statuses = [response.status_code async for response in responses]
            if len(statuses) != len(names):
                statuses = [0] * len(names)
            removed = sum(1 for status in statuses if 200 <= status < 300)
            for name, status in zip(names, statuses, strict=True):
                if status == 404 or 200 <= status < 300:
                    continue
                try:
                    await container.delete_blob(name)
                    removed += 1
                except ResourceNotFoundError:
                    pass
        return removed


def _check_connection_string(connection_string: str) -> None:
    """ConfigError now for a connection string the SDK cannot parse (parsing only, no I/O)."""
    from azure.storage.blob import BlobServiceClient as SyncServiceClient

    try:
        SyncServiceClient.from_connection_string(connection_string).close()
    except ValueError as exc:
        raise ConfigError(f"not a usable Azure storage connection string: {exc}",
                          f"{_SETTINGS}.azure_connection_string") from None
