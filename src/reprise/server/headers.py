"""Response headers that report what the cache did.

``x-litellm-cache-key`` keeps LiteLLM's name so existing dashboards work; its value is
the stored key (``{namespace}:{hash}`` or the bare hash), as ``redis-cli GET`` needs it.
``x-reprise-cache`` is ``hit``, ``miss`` or ``bypass`` on every cacheable response;
``age`` (RFC 9111 §5.1) is the entry's age in whole seconds on a hit.
"""

from __future__ import annotations

from reprise.core.entry import CacheEntry

CACHE_KEY = b"x-litellm-cache-key"
CACHE_STATUS = b"x-reprise-cache"
AGE = b"age"

_STATUS_VALUES = {word: word.encode() for word in ("hit", "miss", "bypass")}


def cache_headers(
    status: str, key: str | None, entry: CacheEntry | None = None, now: float = 0.0
) -> list[tuple[bytes, bytes]]:
    headers = [(CACHE_STATUS, _STATUS_VALUES[status])]
    if key is not None:
        headers.append((CACHE_KEY, key.encode()))
    if entry is not None:
        headers.append((AGE, str(int(entry.age(now))).encode()))
    return headers
