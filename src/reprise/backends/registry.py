"""Maps LiteLLM's ``cache_params.type`` names to backend classes, imported lazily.

A backend module is only imported when configured, so ``import reprise`` works
with no optional dependency installed; a missing dependency becomes a
:class:`ConfigError` that names the extra to install.
"""

from __future__ import annotations

import importlib
from typing import Any

from reprise.errors import ConfigError

#: type name -> ("module:Class", pip extra that provides its dependencies or None)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "local": ("reprise.backends.memory:MemoryBackend", None),
    "disk": ("reprise.backends.disk:DiskBackend", None),
    "redis": ("reprise.backends.redis:RedisBackend", "redis"),
    "s3": ("reprise.backends.s3:S3Backend", "s3"),
    "gcs": ("reprise.backends.gcs:GcsBackend", "gcs"),
    "azure-blob": ("reprise.backends.azure_blob:AzureBlobBackend", "azure"),
    "local-semantic": ("reprise.backends.local_semantic:LocalSemanticBackend", "semantic"),
    "qdrant-semantic": ("reprise.backends.qdrant:QdrantSemanticBackend", "qdrant"),
    "redis-semantic": ("reprise.backends.redis_vector:RedisSemanticBackend", "redis-semantic"),
}

#: LiteLLM types that Reprise does not provide (yet); named in the error.
PLANNED: frozenset[str] = frozenset()


def load_backend_class(type_name: str) -> Any:
    """Import and return the class registered for ``type_name``."""
    try:
        target, extra = BACKENDS[type_name]
    except KeyError:
        if type_name in PLANNED:
            raise ConfigError(
                f"cache type {type_name!r} is not available in this version of Reprise; "
                f"available: {sorted(BACKENDS)}",
                "litellm_settings.cache_params.type",
            ) from None
        raise ConfigError(
            f"unknown cache type {type_name!r}; expected one of {sorted(BACKENDS)}",
            "litellm_settings.cache_params.type",
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'reprise[{extra}]'" if extra else "reinstall reprise"
        raise ConfigError(
            f"cache type {type_name!r} needs a missing dependency ({exc.name}); run: {hint}",
            "litellm_settings.cache_params.type",
        ) from exc
    return getattr(module, class_name)
