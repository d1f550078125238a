"""The decision for one request: read the cache or not, store the answer or not, for how long.

Pure: configuration and controls in, a :class:`CachePlan` out; freshness with ``now``
passed in. ``status`` values are what Reprise reports in ``x-reprise-cache``:
``hit`` (served from cache), ``miss`` (looked up, not usable, upstream called) and
``bypass`` (cache not consulted: caching off for this request, or ``no-cache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reprise.core.controls import CacheControls
from reprise.core.entry import CacheEntry

Mode = Literal["default_on", "default_off"]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Gateway-wide cache settings (from ``litellm_settings.cache_params``)."""

    enabled: bool = True
    mode: Mode = "default_on"
    ttl: float | None = None
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class CachePlan:
    read: bool
    store: bool
    ttl: float | None
    max_age: float | None
    namespace: str | None

    @property
    def uses_cache(self) -> bool:
        return self.read or self.store


BYPASS = CachePlan(read=False, store=False, ttl=None, max_age=None, namespace=None)


def decide(policy: CachePolicy, controls: CacheControls) -> CachePlan:
    """Combine gateway policy and one request's controls.

    ``use-cache: false`` opts out even in ``default_on``; in ``default_off`` only
    ``use-cache: true`` opts in (LiteLLM's semantics).
    """
    if not policy.enabled:
        return BYPASS
    if controls.use_cache is False:
        return BYPASS
    if policy.mode == "default_off" and controls.use_cache is not True:
        return BYPASS
    return CachePlan(
        read=not controls.no_cache,
        store=not controls.no_store,
        ttl=controls.ttl if controls.ttl is not None else policy.ttl,
        max_age=controls.s_maxage,
        namespace=controls.namespace if controls.namespace is not None else policy.namespace,
    )


def is_usable(entry: CacheEntry, now: float, max_age: float | None) -> bool:
    """Fresh by its own expiry and young enough for this request's ``s-maxage``."""
    if entry.expires_at is not None and now >= entry.expires_at:
        return False
    return max_age is None or now - entry.created_at <= max_age


def expiry_time(now: float, ttl: float | None) -> float | None:
    return None if ttl is None else now + ttl
