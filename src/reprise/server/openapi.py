"""The OpenAPI 3.1 description of Reprise's own HTTP API, served at ``GET /openapi.json``.

Why a hand-written dict rather than one generated from models: the server is plain ASGI
and validates with cheap checks (:mod:`reprise.core.request`, :mod:`reprise.core.controls`),
so there is no model to generate from. The document below states exactly what those
checks accept and what the routes answer; ``tests/server/test_openapi.py`` keeps the two
in step and ``tests/server/test_fuzz_http.py`` fuzzes the gateway from this document.

Request bodies mirror OpenAI's (https://platform.openai.com/docs/api-reference/chat) where
Reprise reads a field; fields it does not read are passed to the provider unchanged, so
the bodies allow additional properties. Answers from the provider (2xx or not) are passed
through, hence the loose success schemas and the ``default`` error responses.
"""

from __future__ import annotations

from typing import Any

import orjson

from reprise.core.controls import MAX_SECONDS, NAMESPACE_PATTERN
from reprise.server.routes import (
    AZURE_PATHS,
    CHAT_PATHS,
    COMPLETIONS_PATHS,
    COUNT_TOKENS_PATHS,
    EMBEDDING_PATHS,
    LIVENESS_PATHS,
    MESSAGES_PATHS,
    MODEL_PATHS,
    READINESS_PATHS,
    RESPONSES_PATHS,
)

Schema = dict[str, Any]

_REF_ERROR = {"$ref": "#/components/schemas/Error"}
_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_SECONDS}


def _nullable(properties: dict[str, Schema]) -> dict[str, Schema]:
    """Optional fields: ``null`` means "not given" (the checks skip it, as OpenAI's API does)."""
    return {name: {"anyOf": [schema, {"type": "null"}]} for name, schema in properties.items()}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(_REF_ERROR, description)


_AUTH_ERRORS = {"401": _error("Missing or invalid API key")}
_BODY_ERRORS = {
    "400": _error("Malformed JSON or a malformed field; `error.param` names it"),
    "413": _error("Body larger than `general_settings.max_request_size_mb`"),
}
_UPSTREAM_ERRORS = {
    "404": _error("Unknown model (`model_not_found`, the message lists the models)"),
    "502": _error("The provider could not be reached or sent a malformed answer"),
    "504": _error("The provider did not answer within the deployment's timeout"),
    "default": _error("An error answer of the provider, passed through with its status"),
}
_CACHE_HEADERS = {
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
    "properties": _nullable(
        {
            "ttl": {**_SECONDS, "exclusiveMinimum": 0, "description": "Seconds the stored entry lives"},
            "s-maxage": {**_SECONDS, "description": "Accept only an entry younger than this"},
            "no-cache": {"type": "boolean", "description": "Skip the read, store the fresh answer"},
            "no-store": {"type": "boolean", "description": "Do not store this answer"},
            "namespace": {"type": "string", "pattern": f"^{NAMESPACE_PATTERN.pattern}$"},
            "use-cache": {"type": "boolean", "description": "Opt in (mode default_off) or out"},
        }
    ),
}

_NUMBER = {"type": "number"}
_INT = {"type": "integer"}
_OBJECT = {"type": "object"}

CHAT_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1, "description": "A `model_name` of the config"},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["role"], "properties": {"role": {"type": "string"}}},
        },
        **_nullable(
            {
                "temperature": _NUMBER,
                "top_p": _NUMBER,
                "presence_penalty": _NUMBER,
                "frequency_penalty": _NUMBER,
                "n": {"type": "integer", "minimum": 1, "maximum": 128},
                "max_tokens": _INT,
                "max_completion_tokens": _INT,
                "seed": _INT,
                "top_logprobs": _INT,
                "stream": {"type": "boolean", "description": "Answer as server-sent events"},
                "logprobs": {"type": "boolean"},
                "parallel_tool_calls": {"type": "boolean"},
                "stop": {"type": ["string", "array"]},
                "tools": {"type": "array"},
                "tool_choice": {"type": ["string", "object"]},
                "response_format": _OBJECT,
                "logit_bias": _OBJECT,
                "stream_options": _OBJECT,
                "metadata": _OBJECT,
                "user": {"type": "string"},
                "cache": {"$ref": "#/components/schemas/CacheControls"},
            }
        ),
    },
}

_TOKENS = {"type": "array", "minItems": 1, "items": {"type": "integer"}}
EMBEDDINGS_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "input"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "minItems": 1, "items": {"anyOf": [{"type": "string"}, _TOKENS]}},
                _TOKENS,
            ]
        },
        **_nullable(
            {
                "encoding_format": {"enum": ["float", "base64"]},
                "dimensions": {"type": "integer", "minimum": 1},
                "cache": {"$ref": "#/components/schemas/CacheControls"},
            }
        ),
    },
}

_CACHE_REF = {"$ref": "#/components/schemas/CacheControls"}
RESPONSES_REQUEST: Schema = {
    "type": "object",
    "required": ["model"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        **_nullable({
            "input": {"type": ["string", "array"]},
            "stream": {"type": "boolean", "description": "Answer as the API's typed server-sent events"},
            "background": {"type": "boolean", "description": "Queued answers are never cached (bypass)"},
            "store": {"type": "boolean"},
            "previous_response_id": {"type": "string", "description": "Cached, keyed by the id"},
            "conversation": {"type": ["string", "object"], "description": "Never cached (bypass)"},
            "prompt": {"type": "object", "description": "A template: never cached without its version (bypass)"},
            "metadata": _OBJECT,
            "cache": _CACHE_REF,
        }),
    },
}
COMPLETIONS_REQUEST: Schema = {
    "type": "object",
    "required": ["model", "prompt"],
    "additionalProperties": True,
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "prompt": {"type": ["string", "array"]},
        **_nullable({
            "stream": {"type": "boolean"},
            "echo": {"type": "boolean"},
            "stream_options": _OBJECT,
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "best_of": {"type": "integer", "minimum": 1, "maximum": 128},
            "cache": _CACHE_REF,
        }),
    },
}

ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "integer", "null"]},
            },
        }
    },
}


#: one server-sent event: ``data`` is a ``chat.completion.chunk`` as JSON, the last one ``[DONE]``
_SSE_EVENT: Schema = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}


def _chat_operation() -> Schema:
    answer = {
        "description": "A `chat.completion` (JSON), or with `stream: true` its `chat.completion.chunk` events",
        "headers": _CACHE_HEADERS,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": _SSE_EVENT},
        },
    }
    return {
        "post": {
            "summary": "Chat completion, served from the cache when possible",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/ChatRequest"},
                        "example": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
                    }
                },
            },
            "responses": {"200": answer, **_BODY_ERRORS, **_AUTH_ERRORS, **_UPSTREAM_ERRORS},
        }
    }


def _embeddings_operation() -> Schema:
    answer = _json({"type": "object", "required": ["object", "data"]}, "An embeddings `list`, one item per input")
    answer["headers"] = {
        **_CACHE_HEADERS,
        "x-reprise-cache-hits": {
            "description": "`k/n` input items served from the cache",
            "schema": {"type": "string"},
        },
    }
    return {
        "post": {
            "summary": "Embeddings, each input item cached on its own",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/EmbeddingsRequest"},
                        "example": {"model": "text-embedding-3-small", "input": "hello"},
                    }
                },
            },
            "responses": {"200": answer, **_BODY_ERRORS, **_AUTH_ERRORS, **_UPSTREAM_ERRORS},
        }
    }


def _verbatim_operation(summary: str, schema: str, example: Schema, answer: str) -> Schema:
    """``/responses`` and ``/completions``: the provider's answer, cached verbatim."""
    ok = {"description": answer, "headers": _CACHE_HEADERS,
          "content": {"application/json": {"schema": _OBJECT}, "text/event-stream": {"schema": _SSE_EVENT}}}
    body = {"schema": {"$ref": f"#/components/schemas/{schema}"}, "example": example}
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": body}},
            "responses": {"200": ok, **_BODY_ERRORS, **_AUTH_ERRORS, **_UPSTREAM_ERRORS},
        }
    }


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
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _OBJECT}]},
            },
        },
    },
    **_nullable(
        {
            "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": _OBJECT}]},
            "tools": {"type": "array", "items": _OBJECT},
            "tool_choice": _OBJECT,
            "thinking": _OBJECT,
            "cache_control": _OBJECT,
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
        **_nullable(
            {
                "temperature": _NUMBER,
                "top_p": _NUMBER,
                "top_k": _NUMBER,
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
    return {status: _json(ref, described[status]) for status in statuses}


def _messages_operation() -> Schema:
    answer = {
        "description": "An Anthropic `message` (JSON), or with `stream: true` Anthropic's stream events",
        "headers": _CACHE_HEADERS,
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["type", "content"]}},
            "text/event-stream": {"schema": _SSE_EVENT},
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


def _count_tokens_operation() -> Schema:
    answer = _json({"type": "object", "required": ["input_tokens"],
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


def _models_operation() -> Schema:
    model = {
        "type": "object",
        "required": ["id", "object"],
        "properties": {"id": {"type": "string"}, "object": {"const": "model"}},
    }
    listing = {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": model}},
    }
    return {
        "get": {
            "summary": "The model names of the config",
            "security": [{"bearer": []}],
            "responses": {"200": _json(listing, "The models"), **_AUTH_ERRORS},
        }
    }


def _health_operation(summary: str, schema: Schema) -> Schema:
    return {"get": {"summary": summary, "security": [], "responses": {"200": _json(schema, summary)}}}


_ADMIN_ERRORS = {**_AUTH_ERRORS, "403": _error("A virtual key, not the master key")}


def _key_operations() -> dict[str, Schema]:
    key_id = {"type": "string", "pattern": "^[0-9a-f]{12}$"}
    # any other field is a 400 (unknown_parameter), in ``cache`` too: hence no additional properties
    generate_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tenant": {"type": "string", "description": "The tenant (partition) of the new key"},
            "team_id": {"type": "string", "description": "LiteLLM's name for `tenant`"},
            "cache": {
                "type": "object",
                "additionalProperties": False,
                "description": "The key's cache defaults: mode, ttl, namespace",
                "properties": {"mode": {"enum": ["default_on", "default_off"]}, "ttl": _NUMBER,
                               "namespace": {"type": "string"}},
            },
        },
    }
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

    def post(summary: str, body: Schema, answer: Schema) -> Schema:
        return {
            "post": {
                "summary": summary,
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": _json(answer, summary), **_BODY_ERRORS, **_ADMIN_ERRORS},
            }
        }

    deleted = {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}}
    return {
        "/key/generate": post("Create a virtual key (returned once, stored hashed)", generate_body, generated),
        "/key/delete": post("Revoke virtual keys created through the API", delete_body, deleted),
        "/key/list": {
            "get": {
                "summary": "Tenants and key ids, never keys",
                "security": [{"bearer": []}],
                "responses": {"200": _json(listing, "The keys"), **_ADMIN_ERRORS},
            }
        },
    }


def build_openapi(version: str) -> Schema:
    """The whole document, as a plain dict."""
    alive = {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}}
    ready = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"const": "healthy"},
            "cache": {"type": ["string", "null"]},
            "cache_backend_failing": {"type": "boolean"},
        },
    }
    paths: dict[str, Schema] = {}
    for path in CHAT_PATHS:
        paths[path] = _chat_operation()
    for path in EMBEDDING_PATHS:
        paths[path] = _embeddings_operation()
    for path in RESPONSES_PATHS:
        paths[path] = _verbatim_operation(
            "Responses API, the provider's answer cached verbatim", "ResponsesRequest",
            {"model": "gpt-4o", "input": "hello"}, "A `response` (JSON), or with `stream: true` its typed events")
    for path in COMPLETIONS_PATHS:
        paths[path] = _verbatim_operation(
            "Legacy text completion, the provider's answer cached verbatim", "CompletionsRequest",
            {"model": "gpt-4o", "prompt": "hello"}, "A `text_completion` (JSON), or with `stream: true` its chunks")
    deployment = [{"name": "deployment", "in": "path", "required": True, "schema": {"type": "string"},
                   "description": "The model name (Azure's deployment); it replaces the body's model."}]
    paths[AZURE_PATHS[0]] = {"parameters": deployment, **_chat_operation()}
    paths[AZURE_PATHS[1]] = {"parameters": deployment, **_embeddings_operation()}
    for path in MESSAGES_PATHS:
        paths[path] = _messages_operation()
    for path in COUNT_TOKENS_PATHS:
        paths[path] = _count_tokens_operation()
    for path in MODEL_PATHS:
        paths[path] = _models_operation()
    for path in LIVENESS_PATHS:
        paths[path] = _health_operation("Liveness", alive)
    for path in READINESS_PATHS:
        paths[path] = _health_operation("Readiness", ready)
    paths.update(_key_operations())
    paths["/openapi.json"] = _health_operation("This document", {"type": "object", "required": ["openapi"]})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Reprise",
            "version": version,
            "description": "A caching gateway for OpenAI-compatible LLM APIs.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "The master key or a virtual key"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                              "description": "The same keys, as the Anthropic SDK sends them"},
            },
            "schemas": {
                "ChatRequest": CHAT_REQUEST,
                "EmbeddingsRequest": EMBEDDINGS_REQUEST,
                "ResponsesRequest": RESPONSES_REQUEST,
                "CompletionsRequest": COMPLETIONS_REQUEST,
                "CacheControls": CACHE_CONTROLS,
                "Error": ERROR,
                "MessagesRequest": MESSAGES_REQUEST,
                "CountTokensRequest": COUNT_TOKENS_REQUEST,
                "AnthropicError": ANTHROPIC_ERROR,
            },
        },
    }


def openapi_json(version: str) -> bytes:
    return orjson.dumps(build_openapi(version))
