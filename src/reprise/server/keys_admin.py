"""``/key/generate``, ``/key/delete``, ``/key/list``: managing virtual keys (master key only).

Route names follow LiteLLM's (https://docs.litellm.ai/docs/proxy/virtual_keys), with
``tenant`` (or LiteLLM's ``team_id``) naming the partition the key belongs to. The
clear key is returned once, by ``/key/generate``, and never stored or shown again.
Methods and the master-key check are the route table's (:mod:`reprise.server.routes`).
"""

from __future__ import annotations

from typing import Any

import orjson

from reprise.config.tenancy import KeyCacheDefaults, _check_tenant
from reprise.core.body import refuse_unknown_fields
from reprise.errors import RequestError
from reprise.server.auth import digest
from reprise.server.gateway import Gateway
from reprise.server.http import JSON_TYPE, send_bytes
from reprise.server.routes import Call, JsonReader

_GENERATE_FIELDS = frozenset({"tenant", "team_id", "cache"})
_CACHE_FIELDS = frozenset(KeyCacheDefaults.model_fields)
_DELETE_FIELDS = frozenset({"keys", "key_sha256"})


class KeysAdmin:
    """The handlers of ``/key/*`` over the gateway's :class:`~reprise.server.auth.KeyStore`."""

    def __init__(self, gateway: Gateway, read_json: JsonReader) -> None:
        self.gateway = gateway
        self.read_json = read_json

    async def generate_key(self, call: Call) -> None:
        body = await self.read_json(call.scope, call.receive)
        refuse_unknown_fields(body, _GENERATE_FIELDS)
        cache = body.get("cache")
        if cache is not None and not isinstance(cache, dict):
            raise RequestError("'cache' must be an object", param="cache")
        if cache:  # the config's key settings accept undeclared keys; a request's must not
            refuse_unknown_fields(cache, _CACHE_FIELDS, "cache.")
        try:
            key, key_digest = await self.gateway.keys.generate(_tenant(body), cache)
        except ValueError as exc:  # pydantic validation of the cache defaults
            raise RequestError(f"invalid cache defaults: {exc}", param="cache") from None
        await _answer(call, {"key": key, "key_id": key_digest[:12], "tenant": body.get("tenant", body.get("team_id"))})

    async def delete_keys(self, call: Call) -> None:
        body = await self.read_json(call.scope, call.receive)
        refuse_unknown_fields(body, _DELETE_FIELDS)
        keys = body.get("keys", [])
        hashes = body.get("key_sha256", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise RequestError("'keys' must be a list of keys", param="keys")
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise RequestError("'key_sha256' must be a list of hex digests", param="key_sha256")
        await _answer(call, {"deleted": await self.gateway.keys.revoke([digest(k) for k in keys] + hashes)})

    async def list_keys(self, call: Call) -> None:
        await _answer(call, {"keys": await self.gateway.keys.describe()})


def _tenant(body: dict[str, Any]) -> str:
    if "tenant" in body and "team_id" in body:  # found from outside: team_id was silently dropped
        raise RequestError("give 'tenant' or LiteLLM's 'team_id', not both", param="team_id")
    tenant = body.get("tenant", body.get("team_id"))
    if not isinstance(tenant, str):
        raise RequestError("'tenant' (or 'team_id') must be a string", param="tenant")
    try:
        return _check_tenant(tenant)
    except ValueError as exc:
        raise RequestError(str(exc), param="tenant") from None


async def _answer(call: Call, result: dict[str, Any]) -> None:
    await send_bytes(call.send, 200, orjson.dumps(result), [JSON_TYPE])
