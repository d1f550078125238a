"""One exception tree for everything Reprise raises on purpose.

    RepriseError
    ├── ConfigError              a config file or setting is wrong; ``path`` names the key
    ├── RequestError             the client's request cannot be served as sent (4xx); ``param`` names the field
    │   ├── AuthError            missing or wrong API key (401)
    │   ├── Forbidden            a valid key without the right: a virtual key on a master-key route (403)
    │   ├── NotFoundError        unknown model, route or cache entry (404)
    │   ├── MethodNotAllowed     a known route, another method; ``allowed`` lists its methods (405)
    │   └── PayloadTooLarge      body over the configured limit (413)
    ├── ServerError              the gateway cannot serve a well-formed request (5xx)
    │   ├── Unsupported          the configured cache store cannot do this operation (501)
    │   └── ServiceUnavailable   a part the request needs is off or failing (503)
    │       └── CacheNotConfigured   a cache route on a gateway without a cache
    ├── BackendError             a cache store failed; the driver fails open on these
    │   ├── BackendUnavailable
    │   └── BackendTimeout
    └── UpstreamError            the provider could not be reached or timed out (502/504)

The client's fault and the gateway's are separate branches, so ``except RequestError``
never swallows an outage. HTTP statuses and OpenAI error types are not attributes of
these classes: the server maps each class to both in one table
(:data:`reprise.server.errors.STATUSES`). :class:`UpstreamError` is the exception: it
carries the status the provider's failure earned (502, 503 or 504).

Outcomes that are not failures (a stream that was cut and so not stored, a
stale entry) are values, not exceptions.
"""

from __future__ import annotations

from collections.abc import Collection


class RepriseError(Exception):
    """Base of every error Reprise raises deliberately."""


class ConfigError(RepriseError):
    """A configuration problem; ``path`` is the dotted YAML path of the key."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class RequestError(RepriseError):
    """A request the client must change, answered with OpenAI's error JSON and a 4xx status.

    ``param`` names the offending field and ``code`` is OpenAI's machine-readable reason,
    both copied into the error body as they are.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)


class AuthError(RequestError):
    """No API key, or one the gateway does not know."""


class Forbidden(RequestError):
    """A valid key that may not use this route (a virtual key on a master-key route)."""


class NotFoundError(RequestError):
    """An unknown model, route or cache entry."""


class MethodNotAllowed(RequestError):
    """A known route asked with a method it does not serve; ``allowed`` becomes the ``Allow`` header."""

    def __init__(self, message: str, allowed: Collection[str]) -> None:
        self.allowed = tuple(sorted(allowed))
        super().__init__(message)


class TooManyRequests(RequestError):
    """A key already has its ``max_parallel_requests`` requests in progress; ``retry-after: 1``."""


class PayloadTooLarge(RequestError):
    """A request body over ``general_settings.max_request_size_mb``."""


class ServerError(RepriseError):
    """A well-formed request the gateway cannot serve, answered with a 5xx status.

    Same context as :class:`RequestError` (``message``, ``param``, ``code``), but not
    under it: retrying the same request later may work, changing it will not.
    """

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)


class Unsupported(ServerError):
    """The configured cache store cannot do this operation (e.g. list its keys)."""


class ServiceUnavailable(ServerError):
    """A part of the gateway the request needs is switched off or failing."""


class CacheNotConfigured(ServiceUnavailable):
    """A cache route (``/cache/*``) on a gateway whose config turns caching off."""

    def __init__(self) -> None:
        super().__init__("Cache not initialized: set litellm_settings.cache: true", code="cache_disabled")


class BackendError(RepriseError):
    """A cache store failed. Backends raise only this family at their edge."""

    def __init__(self, message: str, backend: str = "") -> None:
        self.backend = backend
        super().__init__(message)


class BackendUnavailable(BackendError):
    """The store cannot be reached (connection refused, DNS, closed)."""


class BackendTimeout(BackendError):
    """The store did not answer within its configured timeout."""


class UpstreamError(RepriseError):
    """The provider could not be reached, or did not answer in time."""

    def __init__(self, message: str, status: int = 502, code: str | None = None) -> None:
        self.status = status
        self.code = code
        """OpenAI's ``error.code`` when the failure has its own (an answer over the size limit)."""
        self.cache_status: str | None = None
        """``miss`` or ``bypass``: what the cache did before the provider failed (for the header)."""
        self.cache_key: str | None = None
        super().__init__(message)
