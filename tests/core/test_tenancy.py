"""Tenant partitions: no namespace a client can send reaches another tenant's keys."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reprise.core.controls import NAMESPACE_PATTERN
from reprise.core.keys import storage_key
from reprise.core.tenancy import partition_namespace

names = st.from_regex(NAMESPACE_PATTERN, fullmatch=True)


def test_partitions() -> None:
    assert partition_namespace(None, "ns") == "ns"
    assert partition_namespace(None, None) is None
    assert partition_namespace("a", None) == "a/default"
    assert partition_namespace("a", "docs") == "a/docs"
    assert partition_namespace("a", "public", {"public"}) == "public"


@given(names, names, st.one_of(st.none(), names), st.one_of(st.none(), names))
def test_no_namespace_crosses_tenants(tenant_a: str, tenant_b: str, ns_a: str | None, ns_b: str | None) -> None:
    if tenant_a == tenant_b:
        return
    key_a = storage_key("h" * 64, partition_namespace(tenant_a, ns_a))
    key_b = storage_key("h" * 64, partition_namespace(tenant_b, ns_b))
    assert key_a != key_b
    assert key_a.startswith(f"{tenant_a}/")
    # and the master key's plain namespaces can never name a tenant partition
    assert "/" not in storage_key("h" * 64, partition_namespace(None, ns_b))
