"""The decision for one request: read the cache or not, store the answer or not, for how long.

Pure: configuration and controls in, a :class:`CachePlan` out; freshness with ``now``
passed in. ``status`` values are what Reprise reports in ``x-reprise-cache``:
``hit`` (served from cache), ``miss`` (looked up, not usable, upstream called) and
``bypass`` (cache not consulted: caching off for this request, or ``no-cache``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from reprise.core.controls import NAMESPACE_PATTERN, CacheControls
from reprise.core.entry import CacheEntry
from reprise.errors import ConfigError

Mode = Literal["default_on", "default_off"]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Gateway-wide cache settings (from ``litellm_settings.cache_params``).

    Checked when made, as the config file's ``cache_params`` and a request's ``cache``
    controls are: a value that would silently cache nothing (``ttl=0``, ``-5``, NaN) or
    put an unsafe namespace in keys raises :class:`~reprise.errors.ConfigError` naming
    the field. ``ttl=None`` (or infinity): entries never expire.
    """

    enabled: bool = True
    mode: Mode = "default_on"
    ttl: float | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise _invalid("enabled", "must be True or False", self.enabled)
        if self.mode not in get_args(Mode):
            raise _invalid("mode", "must be 'default_on' or 'default_off'", self.mode)
        ttl = self.ttl
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                                or math.isnan(ttl) or ttl <= 0):
            raise _invalid("ttl", "must be a number of seconds > 0, or None (entries never expire)", ttl)
        if self.namespace is not None and not (isinstance(self.namespace, str)
                                               and NAMESPACE_PATTERN.fullmatch(self.namespace)):
            raise _invalid("namespace", "must be 1-128 characters of A-Z a-z 0-9 . _ -, or None", self.namespace)


def _invalid(field: str, rule: str, value: Any) -> ConfigError:
    return ConfigError(f"{rule}, not {value!r}", f"CachePolicy.{field}")


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
