"""Pydantic models for LiteLLM's proxy ``config.yaml``: the part of it Reprise reads.

The file format is LiteLLM's (https://docs.litellm.ai/docs/proxy/configs and
https://docs.litellm.ai/docs/proxy/caching), so one file serves both. Every model
accepts keys it does not declare (``extra="allow"``): LiteLLM has many settings
Reprise does not implement, and a config written for LiteLLM must still load.
Those keys are kept out of the way and listed by :attr:`GatewayConfig.ignored_keys`;
the keys Reprise does read are validated, with the YAML path in every error.

Validation is pydantic's default (lax) mode on purpose: values that come from
``os.environ/NAME`` are strings, so ``ttl: os.environ/CACHE_TTL`` must accept "600".
Strings are never coerced from numbers, lists or mappings.

``cache_params`` is a discriminated union on ``type``: one model per cache type,
each validating its own parameters. A new backend adds its model to
:data:`CacheParams`; nothing else changes here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from reprise.backends.registry import PLANNED

#: LiteLLM's call type names for ``cache_params.supported_call_types``.
CallType = Literal[
    "completion",
    "acompletion",
    "embedding",
    "aembedding",
    "atext_completion",
    "text_completion",
    "atranscription",
    "transcription",
    "arerank",
    "rerank",
    "aresponses",
    "responses",
]
#: LiteLLM's ``cache_params.mode``: cache every request, or only those that opt in.
CacheMode = Literal["default_on", "default_off"]

def _default_call_types() -> list[CallType]:
    return ["acompletion", "completion", "aembedding", "embedding", "atext_completion", "text_completion",
            "aresponses", "responses"]


_NAMESPACE = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _check_namespace(value: str | None) -> str | None:
    if value is not None and not _NAMESPACE.fullmatch(value):
        raise PydanticCustomError(
            "namespace", "namespace must be 1-128 characters of A-Z a-z 0-9 . _ -"
        )
    return value


class Section(BaseModel):
    """Base of every config model: frozen, accepts undeclared keys, hides them in repr.

    Undeclared keys may hold secrets Reprise never reads (``database_url``, a Redis
    password), so ``repr`` shows declared fields only; :attr:`extras` has the rest.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    @property
    def extras(self) -> dict[str, Any]:
        """The keys of this section that the model does not declare, as given."""
        return dict(self.model_extra or {})

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            if name in fields:
                yield name, value


# --- cache_params: one model per ``type`` -------------------------------------------------


class BaseCacheParams(Section):
    """What every cache type shares (LiteLLM's ``cache_params`` common keys)."""

    type: str
    #: Seconds an entry is served for; None means no expiry.
    ttl: float | None = Field(default=None, gt=0)
    namespace: Annotated[str | None, AfterValidator(_check_namespace)] = None
    mode: CacheMode = "default_on"
    supported_call_types: list[CallType] = Field(default_factory=_default_call_types)

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
            env = next((v for n in ("QDRANT_URL", "QDRANT_API_BASE") if (v := os.environ.get(n, "").strip())), None)
            if env:
                data["qdrant_api_base"] = env
        if not data.get("qdrant_api_key") and os.environ.get("QDRANT_API_KEY", "").strip():
            data["qdrant_api_key"] = os.environ["QDRANT_API_KEY"].strip()
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


# --- model_list -----------------------------------------------------------------------------


class LiteLLMParams(Section):
    """``model_list[].litellm_params``: where and how to call the provider."""

    #: ``provider/model`` as LiteLLM spells it, e.g. ``openai/gpt-4o``.
    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: SecretStr | None = None
    #: Azure OpenAI's ``api-version`` query parameter (``azure/`` models; else env AZURE_API_VERSION).
    api_version: str | None = None
    #: Answer with this text instead of calling the provider (LiteLLM's mock_response).
    mock_response: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    stream_timeout: float | None = Field(default=None, gt=0)
    #: ``azure/``: an Entra ID access token, used when there is no api_key (else env AZURE_AD_TOKEN).
    azure_ad_token: SecretStr | None = None
    #: ``azure/``: a service principal's tenant, client id and secret for Entra ID tokens
    #: (else env AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET; else DefaultAzureCredential).
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: ``vertex_ai/``: the Google Cloud project (else env VERTEXAI_PROJECT, else the credentials' project).
    vertex_project: str | None = None
    #: ``vertex_ai/``: the region (else env VERTEXAI_LOCATION, else us-central1).
    vertex_location: str | None = None
    #: ``vertex_ai/``: a service-account JSON, or the path of one (else Application Default Credentials).
    vertex_credentials: SecretStr | dict[str, Any] | None = None
    #: LiteLLM's per-deployment concurrency cap; Reprise defaults it to 128 so one busy
    #: deployment (or one tenant's open streams) cannot take every upstream connection.
    max_parallel_requests: int | None = Field(default=None, gt=0)
    #: Sent to the provider as ``OpenAI-Organization`` (else env OPENAI_ORGANIZATION for openai/, as LiteLLM).
    organization: str | None = Field(default=None, min_length=1)
    #: Headers sent with every call to this deployment (its credentials are never overridden).
    extra_headers: dict[str, str] | None = None

    @property
    def provider(self) -> str:
        """The LiteLLM provider prefix of :attr:`model`; without one, ``anthropic`` for a Claude
        name (as LiteLLM infers it; found from outside: a ``*`` catch-all sent Claude prompts to
        OpenAI), else ``openai``."""
        prefix, slash, _ = self.model.partition("/")
        if slash:
            return prefix
        return "anthropic" if prefix.startswith("claude-") else "openai"

    @property
    def upstream_model(self) -> str:
        """The model name sent to the provider: :attr:`model` without its prefix."""
        prefix, slash, rest = self.model.partition("/")
        return rest if slash else prefix


class ModelInfo(Section):
    """``model_list[].model_info``: prices, used to report what the cache saved."""

    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)


class ModelDeployment(Section):
    """One ``model_list`` entry. Several entries may share a ``model_name``
    (LiteLLM load-balances across them); their list order is their identity."""

    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: ModelInfo = Field(default_factory=ModelInfo)


# --- connection limits (general_settings) ---------------------------------------------------


class ConnectionSettings(Section):
    """The ``general_settings`` keys that bound what one client connection can hold.

    Enforced by the server's HTTP protocol (:mod:`reprise.server.protocol`) before any
    request reaches the app, so they hold for anonymous clients too. Limits apply per
    process: with ``--workers N`` each worker has its own ``max_connections``.
    """

    #: Reprise: the largest request head (request line and header fields), in bytes; larger → 431.
    max_header_bytes: int = Field(default=65536, ge=1024)
    #: Reprise: the most header fields in one request; more → 431.
    max_headers: int = Field(default=100, ge=1)
    #: Reprise: seconds to receive a whole request head, from connect (or from its first byte
    #: on a kept-alive connection); late → 408 and close.
    request_head_timeout: float = Field(default=10.0, gt=0)
    #: Reprise: seconds to receive a whole request body once its head is in; late → 408 and close.
    request_body_timeout: float = Field(default=60.0, gt=0)
    #: Reprise: seconds an idle kept-alive connection stays open between requests.
    keep_alive_timeout: float = Field(default=30.0, gt=0)
    #: Reprise: open client connections per process. At the cap a new connection first closes
    #: the longest-idle one (idle, or still sending its head), then the one stalled longest on a
    #: client that does not read its answer; if every one is busy it is answered 503
    #: ``too_many_connections``. Unset: half the open-file limit (``ulimit -n``).
    max_connections: int | None = Field(default=None, ge=1)
    #: Reprise: seconds a connection may go without its client reading any of an answer that
    #: waits to be sent (nginx's ``send_timeout``); then the connection is aborted. A client that
    #: reads slowly but steadily is never cut off.
    response_send_timeout: float = Field(default=30.0, gt=0)
    #: Reprise: megabytes of answers, across all connections of a process, that may wait in send
    #: buffers for clients not reading them; beyond it the connection stalled longest is aborted.
    max_unsent_response_mb: float = Field(default=256, gt=0)


# --- settings -------------------------------------------------------------------------------


class GeneralSettings(ConnectionSettings):
    """``general_settings``: the proxy's own settings."""

    #: Blank (or an ``os.environ/NAME`` set but blank) is a config error, as for every secret (loader.py).
    master_key: SecretStr | None = None
    #: Reprise: serve without a master key on purpose (config/serving.py); otherwise a missing
    #: ``master_key`` stops start-up.
    allow_unauthenticated: bool = False
    max_request_size_mb: float = Field(default=8, gt=0)
    #: Reprise: API keys besides the master key, each in a tenant (see config/tenancy.py).
    virtual_keys: list[VirtualKeyConfig] = Field(default_factory=list)
    #: Reprise: requests one virtual key may have in progress at once (a key's own
    #: ``max_parallel_requests`` wins); beyond it 429 ``too_many_parallel_requests``, before the
    #: body is read. The master key has no such limit.
    max_parallel_requests_per_key: int = Field(default=128, ge=1)
    #: Reprise: the SQLite store (0600) of hashed keys created through the admin API (/key/generate),
    #: shared by every worker; an older JSON keys file is converted at start (server/key_store.py).
    keys_file: str | None = None
    #: Reprise: namespaces that every tenant may read and write on purpose.
    shared_namespaces: list[Annotated[str, AfterValidator(_check_namespace)]] = Field(default_factory=list)
    #: Reprise: the per-request log line as JSON (also env REPRISE_JSON_LOGS=1); see docs/operations.md.
    json_logs: bool = False
    #: Reprise: write one ``reprise.access`` line per API request.
    request_logs: bool = True
    #: Reprise: put the prompt (last message, 200 chars) in request log lines. Off: prompts may be private.
    log_prompts: bool = False
    #: Reprise: ``/metrics`` needs the master key (the default: its labels name tenants and
    #: namespaces); ``false`` opens it to anyone who can reach the port.
    metrics_require_auth: bool = True
    #: Reprise: namespaces that get their own ``namespace`` label in ``/metrics``; any other one
    #: a client sends is counted as ``_other`` (the cache's own and the shared ones are named).
    metrics_namespaces: list[Annotated[str, AfterValidator(_check_namespace)]] = Field(default_factory=list)


class LiteLLMSettings(Section):
    """``litellm_settings``: caching and the default upstream timeout."""

    cache: bool = False
    request_timeout: float = Field(default=600, gt=0)
    #: Reprise: the longest a request waits for a free connection slot of its deployment
    #: (``max_parallel_requests``) before it is answered 503 ``upstream_busy``.
    upstream_queue_timeout: float = Field(default=10.0, gt=0)
    cache_params: CacheParams | None = None
    _cache_type_note: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _default_type(cls, data: Any, handler: Any) -> LiteLLMSettings:
        """A missing ``cache_params.type`` (or ``cache: true`` with no ``cache_params``).

        LiteLLM's proxy reads it as ``redis`` (``cache_params.get("type", "redis")``, host and
        port from ``REDIS_HOST`` / ``REDIS_PORT``). Found from outside: Reprise read it as
        ``local``, so replicas meant to share one Redis each kept their own cache. Now it is
        ``redis`` when Redis is named (a connection key, or ``REDIS_HOST`` / ``REDIS_URL`` in
        the environment), else ``local`` (no Redis to reach: LiteLLM would fail on every
        request), said once at start (:attr:`cache_type_note`).
        """
        note = None
        if isinstance(data, dict):
            params = data.get("cache_params")
            if params is None and data.get("cache") is True:
                params = {}
            if isinstance(params, dict) and params.get("type") is None:
                redis_named = bool(_REDIS_KEYS & params.keys()) or any(
                    os.environ.get(name, "").strip() for name in ("REDIS_HOST", "REDIS_URL"))
                chosen = "redis" if redis_named else "local"
                data = {**data, "cache_params": {**params, "type": chosen}}
                note = (f"litellm_settings.cache_params.type is not set: using {chosen!r}"
                        + (" (Redis is named by its keys or REDIS_HOST / REDIS_URL, as LiteLLM reads it)"
                           if redis_named else " (in-process; LiteLLM's proxy would use Redis at REDIS_HOST; "
                           "set type: redis to share the cache between replicas)"))
        settings: LiteLLMSettings = handler(data)
        settings._cache_type_note = note
        return settings

    @property
    def cache_type_note(self) -> str | None:
        """What was chosen for a missing ``cache_params.type``, to be said at start (None: it was set)."""
        return self._cache_type_note


#: ``cache_params`` keys that name a Redis server (so a missing ``type`` means ``redis``).
_REDIS_KEYS = frozenset({"host", "port", "password", "url", "redis_url", "redis_startup_nodes",
                         "startup_nodes", "sentinel_nodes", "service_name"})


class AliasTarget(Section):
    """LiteLLM's long form of an alias: ``{model: <group>, hidden: true}``."""

    model: str = Field(min_length=1)
    hidden: bool = False


class RouterSettings(Section):
    """``router_settings``: Reprise reads the model aliases; LiteLLM's load-balancing
    and retry keys are accepted and ignored (warned)."""

    #: Another name for a ``model_list`` group: ``{alias: group}`` or ``{alias: {model: group, hidden: bool}}``.
    model_group_alias: dict[str, str | AliasTarget] = Field(default_factory=dict)


class GatewayConfig(Section):
    """A whole ``config.yaml``. Build it with :func:`reprise.config.load_config`."""

    model_list: list[ModelDeployment] = Field(default_factory=list)
    general_settings: GeneralSettings = Field(default_factory=GeneralSettings)
    litellm_settings: LiteLLMSettings = Field(default_factory=LiteLLMSettings)
    router_settings: RouterSettings = Field(default_factory=RouterSettings)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # ``general_settings:`` with nothing under it is null in YAML; read it as empty.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in cls.model_fields and v is None)}
        return data

    @property
    def ignored_keys(self) -> list[str]:
        """Dotted YAML paths of every key Reprise accepted but does not use."""
        return [path for path, _ in find_extras(self)]

    @property
    def cache_enabled(self) -> bool:
        """Whether ``litellm_settings.cache`` turns caching on."""
        return self.litellm_settings.cache

    @property
    def cache_params(self) -> CacheParams | None:
        """The cache settings (a missing type settled by :meth:`LiteLLMSettings._default_type`)."""
        params = self.litellm_settings.cache_params
        if params is None and self.cache_enabled:
            return LocalCacheParams()
        return params

    def deployments(self, model_name: str) -> list[ModelDeployment]:
        """Every deployment serving ``model_name``, in file order."""
        return [entry for entry in self.model_list if entry.model_name == model_name]

    def model_names(self) -> list[str]:
        """The distinct model names, in order of first appearance."""
        return list(dict.fromkeys(entry.model_name for entry in self.model_list))


def find_extras(model: BaseModel, path: str = "") -> list[tuple[str, type[BaseModel]]]:
    """Every undeclared key under ``model`` as (dotted path, model class that holds it)."""
    found: list[tuple[str, type[BaseModel]]] = []
    for name in type(model).model_fields:
        found.extend(_extras_in(getattr(model, name), f"{path}.{name}" if path else name))
    for key in model.model_extra or {}:
        found.append((f"{path}.{key}" if path else str(key), type(model)))
    return found


def _extras_in(value: Any, path: str) -> list[tuple[str, type[BaseModel]]]:
    if isinstance(value, BaseModel):
        return find_extras(value, path)
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _extras_in(item, f"{path}[{i}]")]
    return []


from reprise.config.tenancy import VirtualKeyConfig  # noqa: E402  (tenancy builds on Section)

GeneralSettings.model_rebuild()
GatewayConfig.model_rebuild()
