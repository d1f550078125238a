"""Who a stored key's share of a bounded store belongs to, for eviction that is fair between owners.

Pure. Used by the in-process store (:mod:`reprise.backends.memory`) and the embedded vector
index (:mod:`reprise.backends.vector_bounds`): a tenant (or a namespace) flooding one of them
evicts its own entries first, not another owner's few.
"""

from __future__ import annotations


def owner_of(key: str) -> str:
    """Who a share of the store belongs to: the tenant whose partition holds ``key``
    (``{tenant}/{namespace}:...``; ``/`` is outside the namespace alphabet), else the namespace
    (``{namespace}:...``: the operator's, or a shared one every tenant writes to), else "".

    Found from outside: with every key without a tenant under one owner, a tenant flooding a
    shared namespace evicted the operator's entries too."""
    slash = key.find("/")
    if slash >= 0:
        return key[:slash]
    colon = key.find(":")
    return key[: colon + 1] if colon >= 0 else ""
