"""The admin routes for virtual keys in the OpenAPI document (:mod:`reprise.server.openapi`)."""

from __future__ import annotations

from reprise.server.openapi_parts import AUTH_ERRORS, BODY_ERRORS, NUMBER, Schema, error_content, json_content

ADMIN_ERRORS = {**AUTH_ERRORS, "403": error_content("A virtual key, not the master key")}


def key_operations() -> dict[str, Schema]:
    key_id = {"type": "string", "pattern": "^[0-9a-f]{12}$"}
    generate_body = _generate_body()
    generated = {
        "type": "object",
        "required": ["key", "key_id", "tenant"],
        "properties": {"key": {"type": "string"}, "key_id": key_id, "tenant": {"type": "string"}},
    }
    delete_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "keys": {"type": "array", "items": {"type": "string"}},
            "key_sha256": {"type": "array", "items": {"type": "string"}},
        },
    }
    row = {
        "type": "object",
        "required": ["key_id", "tenant", "source"],
        "properties": {"key_id": key_id, "tenant": {"type": "string"}, "source": {"enum": ["config", "keys_file"]}},
    }
    listing = {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": row}}}

    deleted = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}}
    return {
        "/key/generate": _post("Create a virtual key (returned once, stored hashed)", generate_body, generated),
        "/key/delete": _post("Revoke virtual keys created through the API", delete_body, deleted),
        "/key/list": {
            "get": {
                "summary": "Tenants and key ids, never keys",
                "security": [{"bearer": []}],
                "responses": {"200": json_content(listing, "The keys"), **ADMIN_ERRORS},
            }
        },
    }


def _generate_body() -> Schema:
    # any other field is a 400 (unknown_parameter), in ``cache`` too: hence no additional properties
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tenant": {"type": "string", "description": "The tenant (partition) of the new key"},
            "team_id": {"type": "string", "description": "LiteLLM's name for `tenant`"},
            "cache": {
                "type": "object",
                "additionalProperties": False,
                "description": "The key's cache defaults: mode, ttl, namespace",
                "properties": {"mode": {"enum": ["default_on", "default_off"]}, "ttl": NUMBER,
                               "namespace": {"type": "string"}},
            },
        },
    }


def _post(summary: str, body: Schema, answer: Schema) -> Schema:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"200": json_content(answer, summary), **BODY_ERRORS, **ADMIN_ERRORS},
        }
    }
