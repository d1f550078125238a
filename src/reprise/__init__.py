"""Reprise: a caching gateway for OpenAI-compatible LLM APIs.

Use it as a proxy (``reprise serve --config config.yaml``) or in-process::

    from reprise import Cache
    with Cache() as cache:                    # in-memory; Cache(DiskBackend(directory=...))
        result = cache.chat(request, call)    # call(request) -> response, made on a miss only
"""

from reprise.errors import (
    BackendError,
    ConfigError,
    RepriseError,
    RequestError,
    UpstreamError,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncCache",
    "BackendError",
    "Cache",
    "CachePolicy",
    "CacheResult",
    "ConfigError",
    "RepriseError",
    "RequestError",
    "UpstreamError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # Lazy: ``import reprise`` stays cheap and free of optional imports.
    if name in ("AsyncCache", "CacheResult"):
        from reprise import cache

        return getattr(cache, name)
    if name == "CachePolicy":
        from reprise.core.policy import CachePolicy

        return CachePolicy
    if name == "Cache":
        from reprise.sync import Cache

        return Cache
    raise AttributeError(f"module 'reprise' has no attribute {name!r}")
