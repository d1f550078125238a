"""Where the Redis backend connects: settings resolved from config and environment, then clients.

Resolution is a pure function (:func:`resolve_target`) so it is tested without a
server; building the redis-py objects (:func:`open_client`) does no I/O either:
redis-py connects on the first command, so a gateway starts while Redis is down.

Precedence, close to LiteLLM's (``litellm/_redis.py``): the config's own address
(``url``, ``host``/``port``, ``redis_startup_nodes`` or ``sentinel_nodes``) wins;
when it gives none, ``REDIS_URL`` is used, else ``REDIS_HOST``/``REDIS_PORT``,
else ``localhost:6379``. ``password``, ``username``, ``ssl`` and ``db`` come from
the config, else from ``REDIS_PASSWORD``, ``REDIS_USERNAME``, ``REDIS_SSL``,
``REDIS_DB``. A ``url`` carries its own credentials and db, as in redis-py.
(LiteLLM lets ``REDIS_URL`` beat a configured ``host``; Reprise lets the file win.)

Every client gets short socket and connect timeouts and no retries, so a slow or
dead Redis costs a request at most about one timeout before the driver fails open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reprise.config.models import check_redis_url
from reprise.errors import ConfigError

PARAMS_PATH = "litellm_settings.cache_params"

Mode = Literal["standalone", "cluster", "sentinel"]


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Everything needed to build a client; secrets are plain here and never logged."""

    mode: Mode = "standalone"
    url: str | None = None
    host: str = "localhost"
    port: int = 6379
    nodes: tuple[tuple[str, int], ...] = ()
    """Cluster startup nodes, or the sentinels."""
    service_name: str | None = None
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    db: int = 0
    ssl: bool = False
    socket_timeout: float = 0.25
    socket_connect_timeout: float = 0.5
    max_connections: int = 128

    def describe(self) -> str:
        """Where, for log lines: no credentials."""
        if self.mode == "standalone":
            where = "url" if self.url else f"{self.host}:{self.port}/{self.db}"
        else:
            where = ",".join(f"{h}:{p}" for h, p in self.nodes)
        return f"redis {self.mode} {where}"


def resolve_target(params: Any, environ: Mapping[str, str]) -> RedisTarget:
    """The connection target for a :class:`~reprise.config.models.RedisCacheParams`."""
    secret = _secret(params.password)
    common: dict[str, Any] = {
        "username": params.username if params.username is not None else environ.get("REDIS_USERNAME"),
        "password": secret if secret is not None else environ.get("REDIS_PASSWORD"),
        "ssl": params.ssl if params.ssl is not None else _env_bool(environ, "REDIS_SSL"),
        "db": params.db if params.db is not None else _env_int(environ, "REDIS_DB", "db", 0, None),
        "socket_timeout": params.socket_timeout,
        "socket_connect_timeout": params.socket_connect_timeout,
        "max_connections": params.max_connections,
    }
    if params.redis_startup_nodes:
        nodes = tuple((node.host, node.port) for node in params.redis_startup_nodes)
        return RedisTarget(mode="cluster", nodes=nodes, **{**common, "db": 0})
    if params.sentinel_nodes:
        return RedisTarget(
            mode="sentinel",
            nodes=tuple((host, port) for host, port in params.sentinel_nodes),
            service_name=params.service_name,
            sentinel_password=_secret(params.sentinel_password),
            **common,
        )
    if params.url is not None:
        return RedisTarget(url=params.url, **common)
    if params.host is not None:
        return RedisTarget(host=params.host, port=params.port or 6379, **common)
    return _from_environment(environ, params.port, common)


def _from_environment(environ: Mapping[str, str], port: int | None, common: dict[str, Any]) -> RedisTarget:
    url = environ.get("REDIS_URL")
    if url:
        try:
            check_redis_url(url)
        except ValueError as exc:
            raise ConfigError(f"{exc} (from REDIS_URL)", f"{PARAMS_PATH}.url") from None
        return RedisTarget(url=url, **common)
    env_port = _env_int(environ, "REDIS_PORT", "port", 1, 65535)
    return RedisTarget(
        host=environ.get("REDIS_HOST") or "localhost",
        port=port or env_port or 6379,
        **common,
    )


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def _env_bool(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _env_int(environ: Mapping[str, str], name: str, key: str, low: int, high: int | None) -> int | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{name} is not a valid {key}", f"{PARAMS_PATH}.{key}")
    return value


def open_client(target: RedisTarget) -> tuple[Any, list[Any]]:
    """A redis-py asyncio client for ``target``, and extra clients to close with it.

    No I/O happens here. Standalone clients use a blocking pool of ``max_connections``
    that waits at most ``socket_connect_timeout + socket_timeout`` for a free
    connection (a burst queues briefly instead of failing open to the upstream); a
    cluster client keeps a pool per node, a sentinel client one pool for the master.
    """
    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    # One immediate retry, on a fresh connection, for a connection error only: after Redis
    # restarts, the pool still holds sockets the old server closed, and the first command on
    # each would otherwise fail (a needless miss and a second outage warning). A refused
    # connection fails again at once; timeouts are never retried, so the bound stays
    # ``socket_connect_timeout`` / ``socket_timeout``.
    timeouts: dict[str, Any] = {
        "socket_timeout": target.socket_timeout,
        "socket_connect_timeout": target.socket_connect_timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    }
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.ssl,
            max_connections=target.max_connections,
            **auth,
            **timeouts,
        )
        return cluster, []
    if target.mode == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.nodes),
            sentinel_kwargs={"password": target.sentinel_password, **timeouts},
            **timeouts,
        )
        master = sentinel.master_for(
            target.service_name or "mymaster", redis_class=Redis, db=target.db, ssl=target.ssl, **auth
        )
        return master, list(sentinel.sentinels)
    return _standalone(target, auth, timeouts), []


def _standalone(target: RedisTarget, auth: dict[str, Any], timeouts: dict[str, Any]) -> Any:
    """A standalone client over a blocking pool (see :func:`open_client`)."""
    from redis.asyncio import BlockingConnectionPool, Redis, SSLConnection

    pool_options: dict[str, Any] = {
        "max_connections": target.max_connections,
        "timeout": target.socket_connect_timeout + target.socket_timeout,
        **timeouts,
    }
    if target.url is not None:
        extra = {k: v for k, v in auth.items() if v is not None}
        pool = BlockingConnectionPool.from_url(target.url, **extra, **pool_options)
    else:
        if target.ssl:
            pool_options["connection_class"] = SSLConnection
        pool = BlockingConnectionPool(host=target.host, port=target.port, db=target.db, **auth, **pool_options)
    return Redis.from_pool(pool)
