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


def is_private(tenant: str | None, namespace: str | None) -> bool:
    """Whether every entry under ``namespace`` was written by this caller's own tenant.

    False for a shared namespace used by a tenant: another tenant may have written its
    entries, so details of them (a matched prompt, its key) must not be shown. The master
    key (tenant ``None``) is the operator, who may see everything.
    """
    return tenant is None or (namespace or "").startswith(f"{tenant}/")
