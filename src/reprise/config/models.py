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
each validating its own parameters (:mod:`reprise.config.cache_params`; a new backend
adds its model to :data:`CacheParams` there). The shared base is in
:mod:`reprise.config.section`; this module re-exports both.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    model_validator,
)

from reprise.config.cache_params import (
    CACHE_PARAM_MODELS,
    LITELLM_IN_MEMORY_TTL,
    AzureBlobCacheParams,
    BaseCacheParams,
    CacheParams,
    DiskCacheParams,
    GcsCacheParams,
    LocalCacheParams,
    LocalSemanticCacheParams,
    LocalTierParams,
    ObjectStoreCacheParams,
    Port,
    QdrantSemanticCacheParams,
    RedisCacheParams,
    RedisNode,
    RedisSemanticCacheParams,
    S3CacheParams,
    SemanticCacheParams,
    check_redis_url,
    describe_cache_type,
)
from reprise.config.environ import env_value
from reprise.config.section import CacheMode, CallType, Section, check_namespace

#: Re-exported: the cache parameters and the shared types moved to their own modules.
__all__ = [
    "CACHE_PARAM_MODELS",
    "LITELLM_IN_MEMORY_TTL",
    "AzureBlobCacheParams",
    "BaseCacheParams",
    "CacheParams",
    "DiskCacheParams",
    "GcsCacheParams",
    "LocalCacheParams",
    "LocalSemanticCacheParams",
    "LocalTierParams",
    "ObjectStoreCacheParams",
    "Port",
    "QdrantSemanticCacheParams",
    "RedisCacheParams",
    "RedisNode",
    "RedisSemanticCacheParams",
    "S3CacheParams",
    "SemanticCacheParams",
    "check_redis_url",
    "describe_cache_type",
    "CacheMode",
    "CallType",
    "Section",
]

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
    shared_namespaces: list[Annotated[str, AfterValidator(check_namespace)]] = Field(default_factory=list)
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
    metrics_namespaces: list[Annotated[str, AfterValidator(check_namespace)]] = Field(default_factory=list)


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
                redis_named = bool(_REDIS_KEYS & params.keys()) or env_value("REDIS_HOST", "REDIS_URL") is not None
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
