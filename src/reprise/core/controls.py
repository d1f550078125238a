"""Per-request cache controls: the body's ``cache`` object and the ``Cache-Control`` header.

The body form is LiteLLM's (https://docs.litellm.ai/docs/proxy/caching#dynamic-cache-controls),
sent by the OpenAI SDK as ``extra_body={"cache": {...}}``:

==============  ==========  =====================================================
``ttl``         seconds>0   how long the entry stored by this request lives
``s-maxage``    seconds>=0  accept only an entry younger than this
``no-cache``    bool        skip the read, call upstream, store the fresh answer
``no-store``    bool        do not store this answer
``namespace``   string      isolate entries (1-128 of ``A-Z a-z 0-9 . _ -``)
``use-cache``   bool        opt in (``mode: default_off``) or out of caching
==============  ==========  =====================================================

Underscore spellings (``no_cache``, ``s_maxage``...) are accepted too; both spellings of
one control with different values are a 400 (neither wins by its place in the JSON).
Anything else in the object is rejected, so a typo is a 400 rather than a silent no-op.
The request ``Cache-Control`` header may say ``no-cache``, ``no-store``,
``max-age=N`` / ``s-maxage=N`` (both mean "no older than N", RFC 9111 §5.2.1.1);
unknown directives are ignored there, as RFC 9111 requires. Where both are given
the body wins. The namespace alphabet keeps keys and headers free of injection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from reprise.errors import RequestError

NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_SECONDS = 10 * 365 * 24 * 3600.0

_ALIASES = {
    "ttl": "ttl",
    "s-maxage": "s_maxage",
    "s_maxage": "s_maxage",
    "no-cache": "no_cache",
    "no_cache": "no_cache",
    "no-store": "no_store",
    "no_store": "no_store",
    "namespace": "namespace",
    "use-cache": "use_cache",
    "use_cache": "use_cache",
}


@dataclass(frozen=True, slots=True)
class CacheControls:
    """What one request asked of the cache; ``None`` means "not said"."""

    ttl: float | None = None
    s_maxage: float | None = None
    no_cache: bool = False
    no_store: bool = False
    namespace: str | None = None
    use_cache: bool | None = None


NO_CONTROLS = CacheControls()


def _seconds(raw: Any, field: str, minimum_exclusive: bool) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise RequestError(f"'{field}' must be a number of seconds", param=field)
    value = float(raw)
    if value != value or value > MAX_SECONDS or value < 0 or (minimum_exclusive and value == 0):
        bound = "> 0" if minimum_exclusive else ">= 0"
        raise RequestError(f"'{field}' must be {bound} and at most {MAX_SECONDS:.0f}", param=field)
    return value


def _flag(raw: Any, field: str) -> bool:
    if not isinstance(raw, bool):
        raise RequestError(f"'{field}' must be true or false", param=field)
    return raw


def validate_namespace(raw: Any, field: str) -> str:
    """A namespace must be a short safe token: it ends up in keys and headers."""
    if not isinstance(raw, str) or not NAMESPACE_PATTERN.fullmatch(raw):
        raise RequestError(
            f"'{field}' must be 1-128 characters of letters, digits, '.', '_' or '-'",
            param=field,
        )
    return raw


def parse_body_controls(raw: Any) -> dict[str, Any]:
    """Validate the body's ``cache`` object into CacheControls field values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RequestError("'cache' must be an object", param="cache")
    out: dict[str, Any] = {}
    said: dict[str, str] = {}  # control -> the spelling that set it
    for name, value in raw.items():
        attr = _ALIASES.get(name)
        field = f"cache.{name}"
        if attr is None:
            raise RequestError(
                f"unknown cache control '{name}'; expected one of "
                "ttl, s-maxage, no-cache, no-store, namespace, use-cache",
                param=field,
            )
        if value is None:
            continue
        if attr == "ttl":
            out[attr] = _seconds(value, field, minimum_exclusive=True)
        elif attr == "s_maxage":
            out[attr] = _seconds(value, field, minimum_exclusive=False)
        elif attr == "namespace":
            out[attr] = validate_namespace(value, field)
        else:
            out[attr] = _flag(value, field)
        if attr in said and said[attr] != name:
            _refuse_conflict(raw, said[attr], name, field)
        said[attr] = name
    return out


def _refuse_conflict(raw: dict[str, Any], first: str, second: str, field: str) -> None:
    """Both spellings of one control (``no-cache`` and ``no_cache``) are fine when they agree;
    when they do not, neither may silently win by coming last in the JSON."""
    if raw[first] != raw[second]:
        raise RequestError(f"cache control given twice with different values, as '{first}' "
                           f"and '{second}'; send one", param=field)


def parse_cache_control_header(header: str | None) -> dict[str, Any]:
    """Directives of a request ``Cache-Control`` header that Reprise honours."""
    if not header:
        return {}
    out: dict[str, Any] = {}
    for part in header.split(","):
        name, _, arg = part.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            out["no_cache"] = True
        elif name == "no-store":
            out["no_store"] = True
        elif name in ("max-age", "s-maxage"):
            arg = arg.strip().strip('"')
            if not (arg.isascii() and arg.isdigit()):  # str.isdigit() is true for '²', which float() refuses
                raise RequestError(
                    f"Cache-Control {name} must be a whole number of seconds",
                    param="Cache-Control",
                )
            out["s_maxage"] = min(float(arg), MAX_SECONDS)
    return out


def parse_controls(body_cache: Any, cache_control_header: str | None = None) -> CacheControls:
    """The controls of one request; body values override the header's."""
    if body_cache is None and not cache_control_header:
        return NO_CONTROLS
    values = parse_cache_control_header(cache_control_header)
    values.update(parse_body_controls(body_cache))
    return CacheControls(**values) if values else NO_CONTROLS
