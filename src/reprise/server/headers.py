"""Response headers that report what the cache did.

``x-litellm-cache-key`` keeps LiteLLM's name so existing dashboards work; its value is
the stored key (``{namespace}:{hash}`` or the bare hash), as ``redis-cli GET`` needs it.
``x-reprise-cache`` is ``hit``, ``miss`` or ``bypass`` on every cacheable response;
``age`` (RFC 9111 §5.1) is the entry's age in whole seconds on a hit.

The provider's own rate-limit, processing-time and request-id headers
(:func:`provider_headers`) are passed on with the answer they came with, as LiteLLM
does, so a client can pace itself. They describe that one call at that moment: they
are never stored, so a hit never carries them as if they were current.
"""

from __future__ import annotations

from collections.abc import Iterable

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


PROVIDER_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-", b"llm_provider-")
PROVIDER_NAMES = frozenset({
    b"openai-processing-ms", b"openai-version", b"openai-organization", b"request-id",
    b"retry-after", b"retry-after-ms", b"apim-request-id", b"x-ms-region", b"azureml-model-session",
})


PROVIDER_REQUEST_ID = b"llm_provider-x-request-id"
"""The provider's ``x-request-id``, renamed as LiteLLM names it: the gateway's own
``x-request-id`` identifies the request in its logs."""


def provider_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[bytes, bytes], ...]:
    """The provider's headers a client may use (rate limits, processing time, request id), lowercased."""
    kept = []
    for name, value in headers:
        lowered = name.lower().encode("latin-1")
        if lowered == b"x-request-id":
            kept.append((PROVIDER_REQUEST_ID, value.encode("latin-1")))
        elif lowered in PROVIDER_NAMES or lowered.startswith(PROVIDER_PREFIXES):
            kept.append((lowered, value.encode("latin-1")))
    return tuple(kept)
