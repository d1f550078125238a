"""Tenant partitions of the cache key space (pure).

Every entry written for a tenant lives under ``{tenant}/{namespace}`` (``default`` when
the request names none), so exact and semantic lookups alike can only see that tenant's
entries. ``/`` is outside the namespace alphabet, so no namespace a client sends can
name another tenant's partition. Namespaces listed in ``shared_namespaces`` are the one
deliberate exception: they are used as they are, by every tenant. Requests made with
the master key (tenant ``None``) keep LiteLLM's plain ``{namespace}:{hash}`` keys.
"""

from __future__ import annotations

from collections.abc import Collection

DEFAULT_PARTITION = "default"


def partition_namespace(
    tenant: str | None, namespace: str | None, shared: Collection[str] = ()
) -> str | None:
    """The namespace actually used in storage keys for this caller."""
    if tenant is None:
        return namespace
    if namespace is not None and namespace in shared:
        return namespace
    return f"{tenant}/{namespace or DEFAULT_PARTITION}"
