"""``/key/generate``, ``/key/delete``, ``/key/list``: managing virtual keys (master key only).

Route names follow LiteLLM's (https://docs.litellm.ai/docs/proxy/virtual_keys), with
``tenant`` (or LiteLLM's ``team_id``) naming the partition the key belongs to. The
clear key is returned once, by ``/key/generate``, and never stored or shown again.
"""

from __future__ import annotations

from typing import Any

import orjson

from reprise.config.tenancy import _check_tenant
from reprise.errors import RequestError
from reprise.server.auth import digest
from reprise.server.gateway import Gateway
from reprise.server.http import JSON_TYPE, Send, send_bytes

KEY_PATHS = frozenset({"/key/generate", "/key/delete", "/key/list"})


class WrongMethod(RequestError):
    status = 405


def _tenant(body: dict[str, Any]) -> str:
    tenant = body.get("tenant", body.get("team_id"))
    if not isinstance(tenant, str):
        raise RequestError("'tenant' (or 'team_id') must be a string", param="tenant")
    try:
        return _check_tenant(tenant)
    except ValueError as exc:
        raise RequestError(str(exc), param="tenant") from None


async def handle_keys(gw: Gateway, method: str, path: str, send: Send, body: dict[str, Any]) -> None:
    if path == "/key/list" and method == "GET":
        result: dict[str, Any] = {"keys": gw.keys.describe()}
    elif path == "/key/generate" and method == "POST":
        cache = body.get("cache")
        if cache is not None and not isinstance(cache, dict):
            raise RequestError("'cache' must be an object", param="cache")
        try:
            key, key_digest = gw.keys.generate(_tenant(body), cache)
        except ValueError as exc:  # pydantic validation of the cache defaults
            raise RequestError(f"invalid cache defaults: {exc}", param="cache") from None
        result = {"key": key, "key_id": key_digest[:12], "tenant": body.get("tenant", body.get("team_id"))}
    elif path == "/key/delete" and method == "POST":
        keys = body.get("keys", [])
        hashes = body.get("key_sha256", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise RequestError("'keys' must be a list of keys", param="keys")
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise RequestError("'key_sha256' must be a list of hex digests", param="key_sha256")
        result = {"deleted": gw.keys.revoke([digest(k) for k in keys] + hashes)}
    else:  # every path of KEY_PATHS is handled above, so only the method can be wrong
        raise WrongMethod(f"method {method} is not allowed on {path}")
    await send_bytes(send, 200, orjson.dumps(result), [JSON_TYPE])
