"""``cache_params``: one pydantic model per cache ``type`` (LiteLLM's keys, and Reprise's own).

A discriminated union on ``type`` (:data:`CacheParams`): a new backend adds its model there;
nothing else changes. Split from :mod:`reprise.config.models`, which re-exports these names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reprise.backends.registry import PLANNED
from reprise.config.environ import env_value
from reprise.config.section import CacheMode, CallType, Section, check_namespace, default_call_types

# --- cache_params: one model per ``type`` -------------------------------------------------


class BaseCacheParams(Section):
    """What every cache type shares (LiteLLM's ``cache_params`` common keys)."""

    type: str
    #: Seconds an entry is served for; None means no expiry.
    ttl: float | None = Field(default=None, gt=0)
    namespace: Annotated[str | None, AfterValidator(check_namespace)] = None
    mode: CacheMode = "default_on"
    supported_call_types: list[CallType] = Field(default_factory=default_call_types)

    @property
    def default_ttl(self) -> float | None:
        """The TTL of an entry whose request names none: :attr:`ttl`."""
        return self.ttl


class LocalCacheParams(BaseCacheParams):
    """``type: local``: an in-process memory cache, bounded by bytes (and by entries if set).

    Bytes by default: a count bound silently evicted most of a working set that fit in
    the byte bound (issue 15). ``max_entries`` stays available for those who want it.
    """

    type: Literal["local"] = "local"
    max_entries: int | None = Field(default=None, gt=0)
    max_bytes: int = Field(default=256 * 2**20, gt=0)
    #: LiteLLM's name for an in-memory cache's TTL (``Cache(type="local", default_in_memory_ttl=...)``).
    default_in_memory_ttl: float | None = Field(default=None, gt=0)

    @property
    def default_ttl(self) -> float | None:
        """:attr:`ttl`, else ``default_in_memory_ttl``, else LiteLLM's in-memory default of
        600 s (its ``InMemoryCache(default_ttl=600)``). Found from outside: a LiteLLM file
        relying on that served answers forever here, and ``default_in_memory_ttl`` was ignored."""
        if self.ttl is not None:
            return self.ttl
        return self.default_in_memory_ttl if self.default_in_memory_ttl is not None else LITELLM_IN_MEMORY_TTL


#: LiteLLM's ``InMemoryCache`` default TTL, seconds: the ``local`` cache's when none is set.
LITELLM_IN_MEMORY_TTL = 600.0


class DiskCacheParams(BaseCacheParams):
    """``type: disk``: a cache directory on local disk (LiteLLM's ``disk_cache_dir``)."""

    type: Literal["disk"]
    disk_cache_dir: str = Field(default=".reprise_cache", min_length=1)
    max_bytes: int = Field(default=2**30, gt=0)


Port = Annotated[int, Field(ge=1, le=65535)]


def check_redis_url(value: str | None) -> str | None:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL with a valid port, else ValueError.

    Only the form is checked: an unreachable host is an outage (fail open), not a config error.
    """
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("url must start with redis://, rediss:// or unix://")
    try:
        parts.port  # noqa: B018  (raises ValueError on a malformed or out-of-range port)
    except ValueError:
        raise ValueError("url has a malformed port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("url has no host")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// url needs a socket path")
    return value


class RedisNode(Section):
    """One ``redis_startup_nodes`` entry (LiteLLM's cluster form)."""

    host: str = Field(min_length=1)
    port: Port


class LocalTierParams(Section):
    """``local_tier``: an in-process copy in front of a shared store (LiteLLM's dual cache)."""

    #: Seconds a local copy is served without asking the shared store: the bound on how
    #: long another instance's overwrite, delete or flush can go unseen here.
    ttl: float = Field(default=5.0, gt=0)
    max_entries: int = Field(default=10_000, gt=0)
    max_bytes: int = Field(default=64 * 2**20, gt=0)


class RedisCacheParams(BaseCacheParams):
    """``type: redis``: standalone, URL, cluster or sentinel, as LiteLLM names the keys.

    See docs/redis.md. Connection keys left unset fall back to ``REDIS_URL`` or
    ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD`` as LiteLLM reads them.
    """

    type: Literal["redis"]
    host: str | None = Field(default=None, min_length=1)
    port: Port | None = None
    username: str | None = None
    password: SecretStr | None = None
    db: int | None = Field(default=None, ge=0)
    ssl: bool | None = None
    url: Annotated[str | None, AfterValidator(check_redis_url)] = None
    redis_startup_nodes: list[RedisNode] | None = Field(default=None, min_length=1)
    sentinel_nodes: list[tuple[Annotated[str, Field(min_length=1)], Port]] | None = Field(default=None, min_length=1)
    service_name: str | None = Field(default=None, min_length=1, validate_default=True)
    sentinel_password: SecretStr | None = None
    socket_timeout: float = Field(default=0.25, gt=0)
    socket_connect_timeout: float = Field(default=0.5, gt=0)
    max_connections: int = Field(default=128, gt=0)
    #: Seconds a cross-instance producer lock lives (and others wait for its answer); 0: off.
    lock_timeout: float = Field(default=10.0, ge=0)
    local_tier: bool | LocalTierParams = False
    #: LiteLLM's name for the in-memory tier's TTL; setting it turns the local tier on.
    default_in_memory_ttl: float | None = Field(default=None, gt=0)
    #: LiteLLM's TTL for Redis entries when ``ttl`` is unset (without either, entries never expire).
    default_in_redis_ttl: float | None = Field(default=None, gt=0)

    @property
    def default_ttl(self) -> float | None:
        """:attr:`ttl`, else LiteLLM's ``default_in_redis_ttl``."""
        return self.ttl if self.ttl is not None else self.default_in_redis_ttl

    @field_validator("sentinel_nodes")
    @classmethod
    def _one_topology(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("redis_startup_nodes"):
            raise ValueError("set redis_startup_nodes (cluster) or sentinel_nodes (sentinel), not both")
        return value

    @field_validator("service_name")
    @classmethod
    def _sentinel_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("sentinel_nodes"):
            raise ValueError("sentinel_nodes needs service_name (the monitored master's name)")
        if value is not None and not info.data.get("sentinel_nodes"):
            raise ValueError("service_name is only used with sentinel_nodes")
        return value

    @property
    def front_tier(self) -> LocalTierParams | None:
        """The local tier's settings, or None when it is off."""
        if isinstance(self.local_tier, LocalTierParams):
            return self.local_tier
        if self.local_tier or self.default_in_memory_ttl is not None:
            ttl = self.default_in_memory_ttl
            return LocalTierParams() if ttl is None else LocalTierParams(ttl=ttl)
        return None


class ObjectStoreCacheParams(BaseCacheParams):
    """What the object-store types share (docs/object-stores.md): bounded threads and timeouts."""

    #: Reprise: seconds to open a connection to the store, and to wait for an answer.
    connect_timeout: float = Field(default=1.0, gt=0)
    read_timeout: float = Field(default=2.0, gt=0)
    #: Reprise: worker threads, and so concurrent requests and pooled connections.
    max_connections: int = Field(default=16, gt=0, le=1024)


class S3CacheParams(ObjectStoreCacheParams):
    """``type: s3`` with LiteLLM's ``s3_*`` keys; unset credentials use the AWS credential chain."""

    type: Literal["s3"]
    s3_bucket_name: str = Field(min_length=1)
    s3_region_name: str | None = None
    s3_endpoint_url: str | None = None
    s3_aws_access_key_id: str | None = None
    s3_aws_secret_access_key: SecretStr | None = None
    s3_aws_session_token: SecretStr | None = None
    #: Key prefix: entries are ``{s3_path}/{namespace}:{hash}`` objects.
    s3_path: str | None = None
    s3_api_version: str | None = None
    s3_use_ssl: bool = True
    #: False skips TLS verification; a string is a CA bundle path (as boto3 takes it).
    s3_verify: bool | str | None = None
    #: botocore ``Config`` arguments, applied over Reprise's timeouts and pool size.
    s3_config: dict[str, Any] | None = None


class GcsCacheParams(ObjectStoreCacheParams):
    """``type: gcs`` with LiteLLM's ``gcs_*`` keys; ``STORAGE_EMULATOR_HOST`` selects an emulator.

    Without ``gcs_path_service_account`` the application default credentials are used.
    """

    type: Literal["gcs"]
    gcs_bucket_name: str = Field(min_length=1)
    gcs_path_service_account: str | None = Field(default=None, min_length=1)
    #: Object prefix: entries are ``{gcs_path}/{namespace}:{hash}`` objects.
    gcs_path: str | None = None


class AzureBlobCacheParams(ObjectStoreCacheParams):
    """``type: azure-blob`` with LiteLLM's keys: a connection string, else DefaultAzureCredential.

    ``azure_connection_string`` (or ``AZURE_STORAGE_CONNECTION_STRING``) wins; otherwise
    ``azure_account_url`` is reached with azure-identity's ``DefaultAzureCredential``.
    """

    type: Literal["azure-blob"]
    azure_blob_container: str = Field(min_length=1)
    azure_account_url: str | None = Field(default=None, min_length=1)
    azure_connection_string: SecretStr | None = None
    #: Reprise: blob prefix, entries are ``{azure_path}/{namespace}:{hash}`` blobs.
    azure_path: str | None = None


class SemanticCacheParams(BaseCacheParams):
    """What the semantic types share (docs/semantic.md): threshold and the verifier."""

    #: Cosine a candidate needs; unset: the embedding model's measured default.
    similarity_threshold: float | None = Field(default=None, ge=0, le=1)
    #: Reprise: second model for candidates below 0.85 cosine; "none" turns it off.
    semantic_cache_verifier_model: str | None = None
    #: Reprise: the share of non-duplicate prompts you accept being answered wrongly; picks the
    #: threshold from the embedded model's shipped calibration curve. An explicit
    #: ``similarity_threshold`` wins (reprise/semantic/calibration.py, docs/semantic.md).
    semantic_max_wrong_rate: float = Field(default=0.02, gt=0, lt=1)
    #: Reprise: the hand-written false-hit guards (numbers, negation, slots, entities, direction,
    #: edits). Unset: off at the budget's threshold (on data they were not written against they
    #: served no more duplicates than the threshold alone at the same wrong rate), on with an
    #: explicit ``similarity_threshold`` (a LiteLLM config's 0.7-0.8, where cosine alone answers
    #: most look-alike questions wrongly and the guards veto many of them). docs/semantic.md.
    semantic_cache_guards: bool | None = None
    #: Reprise: a ``model_list`` chat model asked whether a candidate below the threshold asks
    #: the same thing as the new prompt (docs/semantic.md, "The model judge"); unset: no judge.
    semantic_cache_judge_model: str | None = Field(default=None, min_length=1)
    #: LiteLLM's: ``key`` only (hits within a key / tenant and namespace, always). ``end_user`` is
    #: refused: found from outside, isolating only semantic hits per ``user`` left the exact cache,
    #: which does not key ``user``, serving one end user's answer to another's identical prompt.
    semantic_cache_scope: Literal["key"] = "key"

    @field_validator("semantic_cache_scope", mode="before")
    @classmethod
    def _no_end_user_scope(cls, value: Any) -> Any:
        if value == "end_user":
            raise ValueError("'end_user' is not supported (the exact cache does not key the request's user): "
                             "give each end user a namespace (the request's cache.namespace) or a virtual key")
        return value
    #: Reprise: the bottom of the judge's band ``[min, threshold)``; unset: the embedding model's
    #: default (0.70 for USE and model_list models, 0.90 for e5, whose cosines crowd higher).
    semantic_cache_judge_min_similarity: float | None = Field(default=None, ge=0, le=1)
    #: Reprise: seconds one judge call may take (a timeout is a miss, never a hit).
    semantic_cache_judge_timeout: float = Field(default=5.0, gt=0, le=60)
    #: Reprise: judge calls in flight at once in a process; past it a band candidate is a miss.
    semantic_cache_judge_max_concurrent: int = Field(default=16, ge=1, le=1024)

    @field_validator("semantic_cache_judge_min_similarity")
    @classmethod
    def _judge_band(cls, floor: float | None, info: ValidationInfo) -> float | None:
        # declared after similarity_threshold and the judge model, so both are in info.data
        threshold = info.data.get("similarity_threshold")
        if floor is not None and info.data.get("semantic_cache_judge_model") is None:
            raise ValueError("set, but semantic_cache_judge_model is not: name the model_list chat model "
                             "that judges the band")
        if floor is not None and threshold is not None and floor >= threshold:
            raise ValueError(f"{floor} must be below similarity_threshold ({threshold}): the judge is asked "
                             "only for candidates between the two")
        return floor

    @property
    def guards_on(self) -> bool:
        """Whether the guards judge candidates (see ``semantic_cache_guards``)."""
        if self.semantic_cache_guards is not None:
            return self.semantic_cache_guards
        return self.similarity_threshold is not None

    @property
    def embedding_model_setting(self) -> tuple[str, str | None]:
        """(this type's key naming the embedding model, its value): LiteLLM names the key per type."""
        raise NotImplementedError


class LocalSemanticCacheParams(SemanticCacheParams):
    """``type: local-semantic`` (Reprise): disk answers + an embedded vector index, embedded model."""

    type: Literal["local-semantic"]
    semantic_cache_dir: str = Field(default=".reprise_semantic", min_length=1)
    semantic_cache_embedding_model: str | None = None
    max_bytes: int = Field(default=2**30, gt=0)
    #: Reprise: bounds of the embedded vector index (docs/semantic.md, "Bounds of the embedded
    #: index"); past one, expired vectors go first, then the oldest. ~2.4 KB a vector at 512
    #: dimensions: 250,000 is ~0.6 GB, and ``max_index_bytes`` caps long prompts or wide embeddings.
    max_vectors: int = Field(default=250_000, gt=0)
    max_vectors_per_scope: int = Field(default=100_000, gt=0)
    max_index_bytes: int = Field(default=768 * 2**20, gt=0)

    @property
    def embedding_model_setting(self) -> tuple[str, str | None]:
        return "semantic_cache_embedding_model", self.semantic_cache_embedding_model


class QdrantSemanticCacheParams(SemanticCacheParams):
    """``type: qdrant-semantic`` with LiteLLM's keys; ``qdrant_path`` (Reprise) runs Qdrant embedded."""

    type: Literal["qdrant-semantic"]
    qdrant_semantic_cache_embedding_model: str | None = None
    qdrant_api_base: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_collection_name: str = Field(default="litellm_semantic_cache", min_length=1)
    qdrant_quantization_config: Literal["binary", "scalar", "product"] | None = None
    qdrant_path: str | None = None
    #: Reprise: points in each collection (prompts' vectors, answers) past which the oldest writes
    #: are evicted, checked every 32 writes or 60 s (docs/semantic.md, "Qdrant layout and expiry").
    max_vectors: int = Field(default=250_000, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        """LiteLLM's fallbacks (``QDRANT_URL``, then ``QDRANT_API_BASE``; ``QDRANT_API_KEY``), and no
        silent in-memory index: found from outside, a LiteLLM config naming its server only in the
        environment got a private, unbounded ``:memory:`` Qdrant per process. LiteLLM refuses a
        config with no URL; so does Reprise, unless ``qdrant_path`` (Reprise's) asks for embedded."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if not data.get("qdrant_api_base"):
            env = env_value("QDRANT_URL", "QDRANT_API_BASE")
            if env:
                data["qdrant_api_base"] = env
        if not data.get("qdrant_api_key") and (key := env_value("QDRANT_API_KEY")):
            data["qdrant_api_key"] = key
        if not data.get("qdrant_api_base") and not data.get("qdrant_path"):
            raise PydanticCustomError(
                "qdrant_url", "qdrant-semantic needs qdrant_api_base (or QDRANT_URL / QDRANT_API_BASE, as LiteLLM "
                "reads them), or Reprise's qdrant_path: a directory for an embedded index (':memory:' for tests)")
        return data

    @property
    def embedding_model_setting(self) -> tuple[str, str | None]:
        return "qdrant_semantic_cache_embedding_model", self.qdrant_semantic_cache_embedding_model


class RedisSemanticCacheParams(SemanticCacheParams, RedisCacheParams):
    """``type: redis-semantic`` with LiteLLM's keys (needs Redis with the search module).

    Every connection key of ``type: redis`` applies (answers go through the same Redis
    backend); a cluster is refused: the search module's KNN does not span shards.
    """

    type: Literal["redis-semantic"]  # type: ignore[assignment]
    redis_semantic_cache_embedding_model: str | None = None
    redis_semantic_cache_index_name: str = Field(
        default="litellm_semantic_cache_index", pattern=r"^[A-Za-z0-9._-]{1,128}$"
    )

    @property
    def embedding_model_setting(self) -> tuple[str, str | None]:
        return "redis_semantic_cache_embedding_model", self.redis_semantic_cache_embedding_model

    @field_validator("redis_startup_nodes")
    @classmethod
    def _no_cluster(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("redis-semantic needs a standalone or sentinel Redis: vector search "
                             "(FT.SEARCH) does not span cluster shards")
        return value


#: The implemented cache types. Adding a backend means adding its model here.
CacheParams = Annotated[
    LocalCacheParams | DiskCacheParams | RedisCacheParams | LocalSemanticCacheParams
    | QdrantSemanticCacheParams | RedisSemanticCacheParams | S3CacheParams | GcsCacheParams
    | AzureBlobCacheParams,
    Field(discriminator="type"),
]

#: type name -> params model, derived from :data:`CacheParams`.
CACHE_PARAM_MODELS: dict[str, type[BaseCacheParams]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(CacheParams)[0])
}


def describe_cache_type(tag: str) -> str:
    """The error message for a ``cache_params.type`` that has no model."""
    available = ", ".join(repr(name) for name in sorted(CACHE_PARAM_MODELS))
    if tag in PLANNED:
        return (
            f"cache type {tag!r} is not available in this version of Reprise; "
            f"available: {available}"
        )
    return f"unknown cache type {tag!r}; expected one of: {available}"
