"""Maps LiteLLM's ``cache_params.type`` names to backend classes, imported lazily.

A backend module is only imported when configured, so ``import reprise`` works
with no optional dependency installed; a missing dependency becomes a
:class:`ConfigError` that names the extra to install.

What a registered class must be is :class:`BackendClass`: it builds its store from
*its own* params model (the config's discriminated union on ``type`` hands each type
its model), and says through :attr:`BackendClass.vector_store` whether the type also
has a vector store (the semantic types). Nobody asks a class what it can do by
probing its attributes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from reprise.errors import ConfigError

if TYPE_CHECKING:
    from reprise.backends.base import Backend
    from reprise.backends.vector import VectorStore
    from reprise.config.models import BaseCacheParams

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

ParamsT = TypeVar("ParamsT", bound="BaseCacheParams", contravariant=True)


class VectorStoreMaker(Protocol[ParamsT]):
    """Makes a semantic type's vector store for one embedding size.

    It is given the exact store built by ``from_params``, so the two may share one
    connection (Qdrant's client, Redis' pool).
    """

    def __call__(self, params: ParamsT, dim: int, backend: Backend, /) -> VectorStore: ...


class BackendClass(Protocol[ParamsT]):
    """A registered ``"module:Class"``: builds the type's store from its own params model."""

    def from_params(self, params: ParamsT) -> Backend:
        """The exact store, built without I/O (connections open lazily or in ``open``)."""
        ...

    @property
    def vector_store(self) -> VectorStoreMaker[ParamsT] | None:
        """None for an exact-only type; a semantic type's maker of its vector store."""
        ...


def load_backend_class(type_name: str) -> BackendClass[BaseCacheParams]:
    """Import and return the class registered for ``type_name``.

    The class takes the params model of ``type_name`` only: pass it the params whose
    ``type`` you looked up (``load_backend_class(params.type).from_params(params)``),
    which the config's discriminated union guarantees. ``tests/backends/test_registry.py``
    checks each class against its model, as the ``TYPE_CHECKING`` block below does for mypy.
    """
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
    # The one unchecked step: a class found by name. Its pairing with the type's params
    # model is what the checks named in the docstring pin.
    return cast("BackendClass[BaseCacheParams]", getattr(module, class_name))


if TYPE_CHECKING:  # mypy checks every registered class against its own params model
    from reprise.backends.azure_blob import AzureBlobBackend
    from reprise.backends.disk import DiskBackend
    from reprise.backends.gcs import GcsBackend
    from reprise.backends.local_semantic import LocalSemanticBackend
    from reprise.backends.memory import MemoryBackend
    from reprise.backends.qdrant import QdrantSemanticBackend
    from reprise.backends.redis import RedisBackend
    from reprise.backends.redis_vector import RedisSemanticBackend
    from reprise.backends.s3 import S3Backend
    from reprise.config import models

    _local: BackendClass[models.LocalCacheParams] = MemoryBackend
    _disk: BackendClass[models.DiskCacheParams] = DiskBackend
    _redis: BackendClass[models.RedisCacheParams] = RedisBackend
    _s3: BackendClass[models.S3CacheParams] = S3Backend
    _gcs: BackendClass[models.GcsCacheParams] = GcsBackend
    _azure: BackendClass[models.AzureBlobCacheParams] = AzureBlobBackend
    _local_semantic: BackendClass[models.LocalSemanticCacheParams] = LocalSemanticBackend
    _qdrant: BackendClass[models.QdrantSemanticCacheParams] = QdrantSemanticBackend
    _redis_semantic: BackendClass[models.RedisSemanticCacheParams] = RedisSemanticBackend
