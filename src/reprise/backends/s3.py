"""A shared, persistent store in an S3 bucket (LiteLLM's ``type: s3``); see docs/object-stores.md.

Any S3-compatible service works (AWS, MinIO, Ceph, R2, SeaweedFS, moto): set
``s3_endpoint_url`` for one that is not AWS. Each entry is one object,
``{s3_path}/{key}`` (:class:`~reprise.backends.object_store.ObjectNames`), so the
``x-litellm-cache-key`` header names the object; its deadline is in the object's
metadata (S3 has no TTL) and a read past it is a miss that deletes the object.
A bucket lifecycle rule on the prefix removes entries nobody reads again.

Why boto3 in threads rather than aiobotocore: boto3 is the SDK operators already
configure (profiles, SSO, IMDS, ``AWS_*``: the whole credential chain), its client
is thread-safe, and a :class:`~reprise.backends.object_store.BlockingRunner` of
``max_connections`` threads with a connection pool of the same size gives bounded
concurrency and connection reuse; the hop to a thread costs microseconds against
a network round trip. Timeouts are short and explicit (``connect_timeout``,
``read_timeout``), with one retry, so an outage costs a request little.

Errors are translated here: missing bucket, refused credentials, 5xx and sockets
become :class:`BackendUnavailable`, timeouts :class:`BackendTimeout`; the driver
fails open. :meth:`S3Backend.check` runs once at start-up and turns a missing
bucket or rejected credentials into a :class:`ConfigError` naming the setting; an
unreachable endpoint is only an outage (the gateway starts and fails open).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from reprise.backends.base import Capabilities
from reprise.backends.object_store import BlockingRunner, ObjectNames, expiry_meta, is_expired
from reprise.errors import BackendError, BackendTimeout, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from reprise.config.models import S3CacheParams

PAGE = 1000
"""Objects per ListObjectsV2 page and per DeleteObjects call (S3's maximum for both)."""

_SETTINGS = "litellm_settings.cache_params"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_NO_BUCKET = frozenset({"NoSuchBucket"})
_DENIED = frozenset({"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "InvalidClientTokenId"})


@dataclass(frozen=True, slots=True)
class S3Target:
    """Where and how to reach the bucket; built from the config or by hand (tests, library)."""

    bucket: str
    prefix: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    api_version: str | None = None
    use_ssl: bool = True
    verify: bool | str | None = None
    connect_timeout: float = 1.0
    read_timeout: float = 2.0
    max_connections: int = 16
    extra_config: Mapping[str, Any] = field(default_factory=dict)
    """LiteLLM's ``s3_config``: botocore ``Config`` arguments, applied over ours."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _classify(exc: BaseException) -> BackendError | None:
    """botocore's exceptions to ours (the runner's classifier)."""
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return BackendTimeout(f"s3 did not answer in time: {exc}", "s3")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return BackendUnavailable(f"s3 has no usable credentials: {exc}", "s3")
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in _NO_BUCKET:
            return BackendUnavailable(f"s3 bucket does not exist: {exc}", "s3")
        return BackendUnavailable(f"s3 refused ({code}): {exc}", "s3")
    if isinstance(exc, EndpointConnectionError | ConnectionClosedError | BotoCoreError):
        return BackendUnavailable(f"s3 failed: {type(exc).__name__}: {exc}", "s3")
    return None


class S3Backend:
    """Entries as objects in one bucket under a prefix; see the module docstring.

    ``clear()`` without a namespace deletes every object under the prefix: give
    Reprise its own bucket or ``s3_path``.
    """

    name = "s3"
    capabilities = Capabilities(native_ttl=False, shared=True, persistent=True)
    vector_store: ClassVar[None] = None
    """An exact-only type: no vector store (see :class:`~reprise.backends.registry.BackendClass`)."""

    def __init__(self, target: S3Target) -> None:
        self.target = target
        self.names = ObjectNames(target.prefix)
        self._runner = BlockingRunner("s3", target.max_connections, _classify)
        self._client: Any = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_params(cls, params: S3CacheParams) -> Self:
        """Build from ``type: s3``'s params (LiteLLM's ``s3_*`` keys)."""

        def secret(value: SecretStr | None) -> str | None:
            return None if value is None else value.get_secret_value()

        target = S3Target(
            bucket=params.s3_bucket_name, prefix=params.s3_path, region=params.s3_region_name,
            endpoint_url=params.s3_endpoint_url, access_key_id=params.s3_aws_access_key_id,
            secret_access_key=secret(params.s3_aws_secret_access_key),
            session_token=secret(params.s3_aws_session_token), api_version=params.s3_api_version,
            use_ssl=params.s3_use_ssl, verify=params.s3_verify, connect_timeout=params.connect_timeout,
            read_timeout=params.read_timeout, max_connections=params.max_connections,
            extra_config=dict(params.s3_config or {}),
        )
        _botocore_config(target)  # a bad s3_config is a config error now, not an outage later
        return cls(target)

    # -- the client (built lazily, in a worker: credential lookup may block) ------------

    def _s3(self) -> Any:
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
            names, token = await self._runner.run(self._list_page, prefix, token)
            if names:
                removed += await self._runner.run(self._delete_batch, names)
            if token is None:
                return removed

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        prefix = self.names.listing_prefix(namespace)
        token: str | None = None
        while True:
            names, token = await self._runner.run(self._list_page, prefix, token)
            # A listing carries no metadata: one HEAD per object leaves expired ones out.
            live = await asyncio.gather(*(self._runner.run(self._is_live, name) for name in names))
            for name, alive in zip(names, live, strict=True):
                key = self.names.key(name)
                if alive and key is not None:
                    yield key
            if token is None:
                return

    async def aclose(self) -> None:
        """Stop the threads, then close the connection pool. Idempotent."""
        await self._runner.aclose()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def check(self) -> None:
        """Start-up check: ConfigError for a missing bucket or rejected credentials.

        An unreachable endpoint raises :class:`BackendUnavailable` (an outage: the
        gateway starts and fails open). ``HeadBucket`` needs ``s3:ListBucket``, which
        :meth:`keys` and :meth:`clear` need too.
        """
        try:
            await self._runner.run(self._head_bucket)
        except BackendUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, NoCredentialsError | PartialCredentialsError):
                raise ConfigError(
                    f"no AWS credentials found ({cause}); set s3_aws_access_key_id and "
                    "s3_aws_secret_access_key or configure the AWS credential chain",
                    f"{_SETTINGS}.s3_aws_access_key_id",
                ) from cause
            if isinstance(cause, ClientError):
                raise _config_error(cause, self.target.bucket) from cause
            raise

    # -- blocking bodies (worker threads) ---------------------------------------------

    def _get(self, name: str) -> bytes | None:
        client = self._s3()
        try:
            response = client.get_object(Bucket=self.target.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        if is_expired(response.get("Metadata"), time.time()):
            client.delete_object(Bucket=self.target.bucket, Key=name)  # lazy expiry
            return None
        return data

    def _set(self, name: str, value: bytes, ttl: float | None) -> None:
        client = self._s3()
        if ttl is not None and ttl <= 0:
            client.delete_object(Bucket=self.target.bucket, Key=name)
            return
        client.put_object(Bucket=self.target.bucket, Key=name, Body=value,
                          Metadata=expiry_meta(ttl, time.time()))

    def _is_live(self, name: str) -> bool:
        """Exists and is not past its deadline; an expired object is deleted on the way."""
        client = self._s3()
        try:
            head = client.head_object(Bucket=self.target.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise
        if is_expired(head.get("Metadata"), time.time()):
            client.delete_object(Bucket=self.target.bucket, Key=name)
            return False
        return True

    def _delete(self, name: str) -> bool:
        # DeleteObject answers 204 whether or not the object existed: HEAD says which.
        existed = self._is_live(name)
        if existed:
            self._s3().delete_object(Bucket=self.target.bucket, Key=name)
        return existed

    def _list_page(self, prefix: str, token: str | None) -> tuple[list[str], str | None]:
        args: dict[str, Any] = {"Bucket": self.target.bucket, "Prefix": prefix, "MaxKeys": PAGE}
        if token is not None:
            args["ContinuationToken"] = token
        page = self._s3().list_objects_v2(**args)
        names = [item["Key"] for item in page.get("Contents", [])]
        return names, page.get("NextContinuationToken") if page.get("IsTruncated") else None

    def _delete_batch(self, names: list[str]) -> int:
        response = self._s3().delete_objects(
            Bucket=self.target.bucket,
            Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
        )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise BackendUnavailable(
                f"s3 could not delete {len(errors)} objects ({first.get('Code')}: {first.get('Message')})", "s3"
            )
        return len(names)

    def _head_bucket(self) -> None:
        self._s3().head_bucket(Bucket=self.target.bucket)


def _botocore_config(target: S3Target) -> Config:
    ours = Config(
        connect_timeout=target.connect_timeout,
        read_timeout=target.read_timeout,
        max_pool_connections=target.max_connections,
        retries={"total_max_attempts": 2, "mode": "standard"},
        # Non-AWS endpoints (MinIO, moto, SeaweedFS) rarely resolve bucket subdomains.
        s3={"addressing_style": "path"} if target.endpoint_url else None,
    )
    if not target.extra_config:
        return ours
    try:
        return ours.merge(Config(**target.extra_config))
    except TypeError as exc:
        raise ConfigError(f"not a botocore Config argument: {exc}", f"{_SETTINGS}.s3_config") from exc


def _open_client(target: S3Target) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        aws_session_token=target.session_token,
        region_name=target.region,
    )
    return session.client(
        "s3", endpoint_url=target.endpoint_url, api_version=target.api_version,
        use_ssl=target.use_ssl, verify=target.verify, config=_botocore_config(target),
    )


def _config_error(exc: ClientError, bucket: str) -> ConfigError:
    code = _code(exc)
    if code in _NO_BUCKET or code in ("404", "NotFound"):
        return ConfigError(f"bucket {bucket!r} does not exist (create it first)", f"{_SETTINGS}.s3_bucket_name")
    if code in _DENIED:
        return ConfigError(
            f"S3 refused the credentials for bucket {bucket!r} ({code}); check s3_aws_access_key_id, "
            "s3_aws_secret_access_key, s3_aws_session_token and the bucket policy (needs s3:ListBucket)",
            f"{_SETTINGS}.s3_aws_access_key_id",
        )
    return ConfigError(f"S3 rejected HeadBucket on {bucket!r} ({code}): {exc}", f"{_SETTINGS}.s3_bucket_name")
