"""One exception tree for everything Reprise raises on purpose.

    RepriseError
    ├── ConfigError          a config file or setting is wrong; ``path`` names the key
    ├── RequestError         a client request is malformed; ``param`` names the field
    │   ├── AuthError        missing or wrong API key (401)
    │   ├── NotFoundError    unknown model or route (404)
    │   └── PayloadTooLarge  body over the configured limit (413)
    ├── BackendError         a cache store failed; the driver fails open on these
    │   ├── BackendUnavailable
    │   └── BackendTimeout
    └── UpstreamError        the provider could not be reached or timed out

Outcomes that are not failures (a stream that was cut and so not stored, a
stale entry) are values, not exceptions.
"""

from __future__ import annotations


class RepriseError(Exception):
    """Base of every error Reprise raises deliberately."""


class ConfigError(RepriseError):
    """A configuration problem; ``path`` is the dotted YAML path of the key."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class RequestError(RepriseError):
    """A bad client request, answered with OpenAI's error JSON and a 4xx status."""

    status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        self.message = message
        self.param = param
        self.code = code
        super().__init__(message)


class AuthError(RequestError):
    status = 401
    error_type = "authentication_error"


class NotFoundError(RequestError):
    status = 404
    error_type = "not_found_error"


class PayloadTooLarge(RequestError):
    status = 413


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

    def __init__(self, message: str, status: int = 502) -> None:
        self.status = status
        self.cache_status: str | None = None
        """``miss`` or ``bypass``: what the cache did before the provider failed (for the header)."""
        self.cache_key: str | None = None
        super().__init__(message)
