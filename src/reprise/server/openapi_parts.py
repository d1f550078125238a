"""Building blocks of the OpenAPI document (:mod:`reprise.server.openapi`): shared schemas and responses.

The error responses, the cache headers and controls every cached route shares, and the few
helpers the route descriptions are written with.
"""

from __future__ import annotations

from typing import Any

from reprise.core.controls import MAX_SECONDS, NAMESPACE_PATTERN

Schema = dict[str, Any]

REF_ERROR = {"$ref": "#/components/schemas/Error"}
SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}


def nullable(properties: dict[str, Schema]) -> dict[str, Schema]:
    """Optional fields: ``null`` means "not given" (the checks skip it, as OpenAI's API does)."""
    return {name: {"anyOf": [schema, {"type": "null"}]} for name, schema in properties.items()}


def json_content(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_content(description: str) -> Schema:
    return json_content(REF_ERROR, description)


AUTH_ERRORS = {"401": error_content("Missing or invalid API key")}
BODY_ERRORS = {
    "400": error_content("Malformed JSON or a malformed field; `error.param` names it"),
    "413": error_content("Body larger than `general_settings.max_request_size_mb`"),
}
UPSTREAM_ERRORS = {
    "404": error_content("Unknown model (`model_not_found`, the message lists the models)"),
    "502": error_content("The provider could not be reached or sent a malformed answer"),
    "504": error_content("The provider did not answer within the deployment's timeout"),
    "default": error_content("An error answer of the provider, passed through with its status"),
}
CACHE_HEADERS = {
    "x-reprise-cache": {"description": "What the cache did", "schema": {"enum": ["hit", "miss", "bypass"]}},
    "x-litellm-cache-key": {
        "description": "The stored key, `{namespace}:{sha256}` or the bare sha256",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._/:-]+$"},
    },
    "age": {"description": "Age of the entry in seconds (hits only)", "schema": {"type": "string"}},
}

CACHE_CONTROLS: Schema = {
    "type": "object",
    "description": "Per-request cache controls (LiteLLM's); underscore spellings are accepted too.",
    "additionalProperties": False,
    "properties": nullable(
        {
            "ttl": {**SECONDS, "exclusiveMinimum": 0, "description": "Seconds the stored entry lives"},
            "s-maxage": {**SECONDS, "description": "Accept only an entry younger than this"},
            "no-cache": {"type": "boolean", "description": "Skip the read, store the fresh answer"},
            "no-store": {"type": "boolean", "description": "Do not store this answer"},
            "namespace": {"type": "string", "pattern": f"^{NAMESPACE_PATTERN.pattern}$"},
            "use-cache": {"type": "boolean", "description": "Opt in (mode default_off) or out"},
        }
    ),
}

NUMBER = {"type": "number"}
INT = {"type": "integer"}
OBJECT = {"type": "object"}
SSE_EVENT: Schema = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
