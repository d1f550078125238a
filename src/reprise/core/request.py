"""Cheap structural checks of client requests, done before a key is computed.

Deliberately not a pydantic model: the hot path must not build objects for a hit.
These checks catch what would otherwise become a 500 or a poisoned key (wrong types
for the fields the gateway reads, or that providers reject), and name the field.
"""

from __future__ import annotations

from typing import Any

from reprise.errors import RequestError

_NUMBER = (int, float)
MAX_CHOICES = 128  # OpenAI's documented bound for 'n'; more would only make the provider fail
#: OpenAI's own bound on the inputs of one embeddings request. It also bounds what one request
#: can write to the cache (one entry per item), so a batch cannot evict everyone else's entries.
MAX_EMBEDDING_INPUTS = 2048
#: The whole input of one embeddings request, in characters (token ids count one each): about
#: OpenAI's 300,000-token bound per request at four characters a token.
MAX_EMBEDDING_INPUT_CHARS = 1_200_000

#: field -> (accepted python types, description for the error)
_CHAT_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"),
    "presence_penalty": (_NUMBER, "a number"),
    "frequency_penalty": (_NUMBER, "a number"),
    "n": ((int,), "an integer"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "top_logprobs": ((int,), "an integer"),
    "stream": ((bool,), "a boolean"),
    "logprobs": ((bool,), "a boolean"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "stop": ((str, list), "a string or a list of strings"),
    "tools": ((list,), "an array"),
    "tool_choice": ((str, dict), "a string or an object"),
    "response_format": ((dict,), "an object"),
    "logit_bias": ((dict,), "an object"),
    "stream_options": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "user": ((str,), "a string"),
}


def _check_fields(body: dict[str, Any], fields: dict[str, tuple[tuple[type, ...], str]]) -> None:
    # Walk the body (a handful of keys) rather than the table: this runs on every hit.
    for name, value in body.items():
        spec = fields.get(name)
        if spec is None or value is None:
            continue
        types, description = spec
        if isinstance(value, bool) and bool not in types:
            raise RequestError(f"'{name}' must be {description}", param=name)
        if not isinstance(value, types):
            raise RequestError(f"'{name}' must be {description}", param=name)


def asks_usage(body: dict[str, Any]) -> bool:
    """Whether a streamed request asks for the usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise RequestError("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' must be a non-empty string", param="model")
    return model


def validate_chat(body: dict[str, Any]) -> None:
    """Raise :class:`RequestError` naming the first malformed field of a chat request."""
    messages = body.get("messages")
    if messages is None:
        raise RequestError("'messages' is a required property", param="messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(
                f"'messages[{i}]' must be an object with a string 'role'", param=f"messages[{i}]"
            )
    _check_fields(body, _CHAT_FIELDS)
    n = body.get("n")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise RequestError(f"'n' must be between 1 and {MAX_CHOICES}", param="n")


def embedding_items(body: dict[str, Any]) -> tuple[list[Any], bool]:
    """The input items of an embeddings request, and whether the input was a single item.

    OpenAI accepts a string, an array of strings, an array of token ids, or an array
    of token-id arrays; a single string or a single token array is one item.
    """
    raw = body.get("input")
    if raw is None:
        raise RequestError("'input' is a required property", param="input")
    if isinstance(raw, str):
        _check_input_size(len(raw))
        return [raw], True
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
            _check_input_size(len(raw))
            return [raw], True
        if len(raw) > MAX_EMBEDDING_INPUTS:
            raise RequestError(f"'input' has {len(raw)} items; at most {MAX_EMBEDDING_INPUTS} are allowed "
                               "per request", param="input", code="too_many_inputs")
        for i, item in enumerate(raw):
            if isinstance(item, str):
                continue
            if isinstance(item, list) and item and all(
                isinstance(x, int) and not isinstance(x, bool) for x in item
            ):
                continue
            raise RequestError(
                f"'input[{i}]' must be a string or an array of token ids", param=f"input[{i}]"
            )
        _check_input_size(sum(len(item) for item in raw))
        return list(raw), False
    raise RequestError(
        "'input' must be a non-empty string or a non-empty array", param="input"
    )


def _check_input_size(size: int) -> None:
    if size > MAX_EMBEDDING_INPUT_CHARS:
        raise RequestError(f"'input' is {size} characters (or tokens) long; at most {MAX_EMBEDDING_INPUT_CHARS} "
                           "are allowed per request", param="input", code="input_too_large")


def validate_embeddings(body: dict[str, Any]) -> None:
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise RequestError("'dimensions' must be a positive integer", param="dimensions")
