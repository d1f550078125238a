"""The Anthropic Messages routes in the OpenAPI document (:mod:`reprise.server.openapi`).

Anthropic's request and error shapes (https://docs.anthropic.com/en/api/messages), as far as
:mod:`reprise.core.messages_request` maps them.
"""

from __future__ import annotations

from reprise.server.openapi_parts import CACHE_HEADERS, NUMBER, OBJECT, SSE_EVENT, Schema, json_content, nullable

_ANTHROPIC_CONVERSATION: Schema = {
    "model": {"type": "string", "minLength": 1, "description": "A `model_name` of the config"},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"enum": ["user", "assistant"]},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": OBJECT}]},
            },
        },
    },
    **nullable(
        {
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": OBJECT}]},
            "tools": {"type": "array", "items": OBJECT},
            "tool_choice": OBJECT,
            "thinking": OBJECT,
            "cache_control": OBJECT,
            "cache": {"$ref": "#/components/schemas/CacheControls"},
        }
    ),
}

#: Anthropic's Messages request (https://docs.anthropic.com/en/api/messages), as far as
#: :mod:`reprise.core.messages_request` maps it; any other field is refused, hence no additional properties.
MESSAGES_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "messages", "max_tokens"],
    "additionalProperties": False,
    "properties": {
        **_ANTHROPIC_CONVERSATION,
        "max_tokens": {"type": "integer", "minimum": 1},
        **nullable(
            {
                "temperature": NUMBER,
                "top_p": NUMBER,
                "top_k": NUMBER,
                "stop_sequences": {"type": "array", "items": {"type": "string"}},
                "stream": {"type": "boolean", "description": "Answer as Anthropic's server-sent events"},
                "metadata": {"type": "object", "properties": {"user_id": {"type": ["string", "null"]}}},
            }
        ),
    },
}
COUNT_TOKENS_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": False,
    "properties": _ANTHROPIC_CONVERSATION,
}
ANTHROPIC_ERROR: Schema = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}


def _anthropic_errors(*statuses: str) -> dict[str, Schema]:
    described = {"400": "Malformed JSON, or a field the gateway cannot map (named in the message)",
                 "401": "Missing or invalid API key (`x-api-key` or `Authorization: Bearer`)",
                 "404": "Unknown model", "413": "Body larger than `general_settings.max_request_size_mb`",
                 "501": "count_tokens for a deployment that is neither OpenAI-compatible nor `anthropic/`",
                 "502": "The provider could not be reached or sent a malformed answer",
                 "504": "The provider did not answer within the deployment's timeout",
                 "default": "An error answer of the provider, with its status"}
    ref = {"$ref": "#/components/schemas/AnthropicError"}
    return {status: json_content(ref, described[status]) for status in statuses}


def messages_operation() -> Schema:
    answer = {
        "description": "An Anthropic `message` (JSON), or with `stream: true` Anthropic's stream events",
        "headers": CACHE_HEADERS,
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["type", "content"]}},
            "text/event-stream": {"schema": SSE_EVENT},
        },
    }
    example = {"model": "gpt-4o", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
    return {
        "post": {
            "summary": "Anthropic Messages API before the configured provider, served from the cache when possible",
            "security": [{"bearer": []}, {"x-api-key": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/MessagesRequest"}, "example": example}}},
            "responses": {"200": answer, **_anthropic_errors("400", "401", "404", "413", "502", "504", "default")},
        }
    }


def count_tokens_operation() -> Schema:
    answer = json_content({"type": "object", "required": ["input_tokens"],
                    "properties": {"input_tokens": {"type": "integer", "minimum": 1}}},
                   "Anthropic's own count for an `anthropic/` deployment (its answer as sent), else an "
                   "estimate of the input tokens (~4 characters a token); never cached")
    answer["headers"] = {"x-reprise-token-count": {
        "description": "`estimate` when the gateway estimated the count; absent when Anthropic counted",
        "schema": {"const": "estimate"}}}
    example = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    return {
        "post": {
            "summary": "Input tokens of an Anthropic Messages request: Anthropic's count, or an estimate",
            "security": [{"bearer": []}, {"x-api-key": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/CountTokensRequest"}, "example": example}}},
            "responses": {"200": answer, **_anthropic_errors("400", "401", "404", "413", "501", "502", "504",
                                                             "default")},
        }
    }
