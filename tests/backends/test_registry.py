"""Each registered ``type`` builds from its own params model, and declares whether it has vectors.

The registry finds a class by name, so this pairing is checked here (and for mypy by the
``TYPE_CHECKING`` block of ``backends/registry.py``) rather than by the import.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest

from reprise.backends.disk import DiskBackend
from reprise.backends.memory import MemoryBackend
from reprise.backends.registry import BACKENDS, BackendClass, load_backend_class
from reprise.config.models import (
    CACHE_PARAM_MODELS,
    BaseCacheParams,
    DiskCacheParams,
    LocalCacheParams,
    SemanticCacheParams,
)
from reprise.errors import ConfigError


def loaded(type_name: str) -> BackendClass[BaseCacheParams]:
    try:
        return load_backend_class(type_name)
    except ConfigError as exc:  # an optional dependency is not installed
        pytest.skip(str(exc))


def test_every_config_type_is_registered() -> None:
    assert set(BACKENDS) == set(CACHE_PARAM_MODELS)


@pytest.mark.parametrize("type_name", sorted(BACKENDS))
def test_each_class_takes_its_own_params_model(type_name: str) -> None:
    annotation = inspect.signature(loaded(type_name).from_params).parameters["params"].annotation
    assert annotation == CACHE_PARAM_MODELS[type_name].__name__  # a string: ``from __future__ import annotations``


@pytest.mark.parametrize("type_name", sorted(BACKENDS))
def test_a_type_has_a_vector_store_exactly_when_its_params_are_semantic(type_name: str) -> None:
    has_vectors = loaded(type_name).vector_store is not None
    assert has_vectors == issubclass(CACHE_PARAM_MODELS[type_name], SemanticCacheParams)


def test_exact_stores_are_built_from_their_params(tmp_path: Path) -> None:
    memory = MemoryBackend.from_params(LocalCacheParams(max_entries=7, max_bytes=99))
    assert (memory.max_entries, memory.max_bytes) == (7, 99)
    disk = DiskBackend.from_params(DiskCacheParams(type="disk", disk_cache_dir=str(tmp_path), max_bytes=123))
    assert (disk.directory, disk.max_bytes) == (tmp_path, 123)
    asyncio.run(disk.aclose())


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        load_backend_class("memcached")
