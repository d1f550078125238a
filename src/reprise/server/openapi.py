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

import orjson

from reprise.server.openapi_admin import key_operations
from reprise.server.openapi_anthropic import (
    ANTHROPIC_ERROR,
    COUNT_TOKENS_REQUEST,
    MESSAGES_REQUEST,
    count_tokens_operation,
    messages_operation,
)
from reprise.server.openapi_parts import (
    AUTH_ERRORS,
    BODY_ERRORS,
    CACHE_CONTROLS,
    CACHE_HEADERS,
    INT,
    NUMBER,
    OBJECT,
    SSE_EVENT,
    UPSTREAM_ERRORS,
    Schema,
    json_content,
    nullable,
)
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
        **nullable(
            {
                "temperature": NUMBER,
                "top_p": NUMBER,
                "presence_penalty": NUMBER,
                "frequency_penalty": NUMBER,
                "n": {"type": "integer", "minimum": 1, "maximum": 128},
                "max_tokens": INT,
                "max_completion_tokens": INT,
                "seed": INT,
                "top_logprobs": INT,
                "stream": {"type": "boolean", "description": "Answer as server-sent events"},
                "logprobs": {"type": "boolean"},
                "parallel_tool_calls": {"type": "boolean"},
                "stop": {"type": ["string", "array"]},
                "tools": {"type": "array"},
                "tool_choice": {"type": ["string", "object"]},
                "response_format": OBJECT,
                "logit_bias": OBJECT,
                "stream_options": OBJECT,
                "metadata": OBJECT,
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
        **nullable(
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
        **nullable({
            "input": {"type": ["string", "array"]},
            "stream": {"type": "boolean", "description": "Answer as the API's typed server-sent events"},
            "background": {"type": "boolean", "description": "Queued answers are never cached (bypass)"},
            "store": {"type": "boolean"},
            "previous_response_id": {"type": "string", "description": "Cached, keyed by the id"},
            "conversation": {"type": ["string", "object"], "description": "Never cached (bypass)"},
            "prompt": {"type": "object", "description": "A template: never cached without its version (bypass)"},
            "metadata": OBJECT,
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
        **nullable({
            "stream": {"type": "boolean"},
            "echo": {"type": "boolean"},
            "stream_options": OBJECT,
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


def _chat_operation() -> Schema:
    answer = {
        "description": "A `chat.completion` (JSON), or with `stream: true` its `chat.completion.chunk` events",
        "headers": CACHE_HEADERS,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/event-stream": {"schema": SSE_EVENT},
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
            "responses": {"200": answer, **BODY_ERRORS, **AUTH_ERRORS, **UPSTREAM_ERRORS},
        }
    }


def _embeddings_operation() -> Schema:
    listing = {"type": "object", "required": ["object", "data"]}
    answer = json_content(listing, "An embeddings `list`, one item per input")
    answer["headers"] = {
        **CACHE_HEADERS,
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
            "responses": {"200": answer, **BODY_ERRORS, **AUTH_ERRORS, **UPSTREAM_ERRORS},
        }
    }


def _verbatim_operation(summary: str, schema: str, example: Schema, answer: str) -> Schema:
    """``/responses`` and ``/completions``: the provider's answer, cached verbatim."""
    ok = {"description": answer, "headers": CACHE_HEADERS,
          "content": {"application/json": {"schema": OBJECT}, "text/event-stream": {"schema": SSE_EVENT}}}
    body = {"schema": {"$ref": f"#/components/schemas/{schema}"}, "example": example}
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": body}},
            "responses": {"200": ok, **BODY_ERRORS, **AUTH_ERRORS, **UPSTREAM_ERRORS},
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
            "responses": {"200": json_content(listing, "The models"), **AUTH_ERRORS},
        }
    }


def _health_operation(summary: str, schema: Schema) -> Schema:
    return {"get": {"summary": summary, "security": [], "responses": {"200": json_content(schema, summary)}}}


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
    paths = _paths(alive, ready)
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


def _paths(alive: Schema, ready: Schema) -> dict[str, Schema]:
    """Every route the gateway answers, by path."""
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
        paths[path] = messages_operation()
    for path in COUNT_TOKENS_PATHS:
        paths[path] = count_tokens_operation()
    for path in MODEL_PATHS:
        paths[path] = _models_operation()
    for path in LIVENESS_PATHS:
        paths[path] = _health_operation("Liveness", alive)
    for path in READINESS_PATHS:
        paths[path] = _health_operation("Readiness", ready)
    paths.update(key_operations())
    paths["/openapi.json"] = _health_operation("This document", {"type": "object", "required": ["openapi"]})
    return paths


def openapi_json(version: str) -> bytes:
    return orjson.dumps(build_openapi(version))

