"""An OpenAI chat completions body as an Anthropic Messages API request (pure, no I/O).

Why: the gateway keeps one canonical form (OpenAI's ``/chat/completions`` body in, a
``chat.completion`` or its SSE out), so the cache key, single-flight, stream storage and
replay never learn which provider answered. An ``anthropic/<model>`` deployment is reached
by translating that body here and the answer back (:mod:`reprise.core.anthropic_response`).

What is promised: the request built is a function of the provider params only (what the
cache key covers, plus the unkeyed ``stream``, ``stream_options`` and ``user`` framing),
so nothing reaches Anthropic that the key does not cover. A parameter Anthropic cannot
take is refused with :class:`~reprise.errors.RequestError` (a 400 naming it) rather than
dropped, as LiteLLM does with its default ``drop_params: false``
(https://docs.litellm.ai/docs/completion/drop_params). The mapping follows LiteLLM's
``AnthropicConfig`` and Anthropic's reference (https://docs.anthropic.com/en/api/messages).
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from reprise.errors import RequestError

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires ``max_tokens``; LiteLLM sends ``DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS`` (4096)
when the client gives neither ``max_tokens`` nor ``max_completion_tokens``, and so do we."""

#: Handled by the translation below (``model`` is the deployment's, ``stream_options`` is
#: the gateway's business: Anthropic always reports usage).
_TRANSLATED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "stream", "stream_options", "user", "tools", "tool_choice", "parallel_tool_calls", "n",
})
#: Anthropic-native parameters LiteLLM passes through unchanged.
_PASSED = frozenset({"top_k"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def refuse(message: str, param: str) -> RequestError:
    return RequestError(f"anthropic: {message}", param=param, code="unsupported_parameter")


def messages_request(params: dict[str, Any], model: str,
                     default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
    """The Messages API body for the OpenAI body ``params`` (already without gateway-only fields)."""
    check_params(params)
    system, messages = translate_messages(params.get("messages"))
    out: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    max_tokens = params.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = params.get("max_tokens")
    out["max_tokens"] = default_max_tokens if max_tokens is None else max_tokens
    out.update(_sampling(params))
    if params.get("tools"):
        out["tools"] = [_tool(i, tool) for i, tool in enumerate(params["tools"])]
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    return out


def check_params(params: dict[str, Any]) -> None:
    """Refuse (400) what Anthropic cannot take, naming the parameter."""
    for name, value in params.items():
        if value is not None and name not in _TRANSLATED and name not in _PASSED:
            raise refuse(f"Anthropic's Messages API has no equivalent of '{name}'; remove it", name)
    n = params.get("n")
    if n is not None and n != 1:
        raise refuse("Anthropic returns one choice per request; 'n' must be 1", "n")


def _sampling(params: dict[str, Any]) -> dict[str, Any]:
    """Sampling and framing: temperature, top_p, top_k, stop sequences, stream, end-user id."""
    out = {name: params[name] for name in ("temperature", "top_p", "top_k") if params.get(name) is not None}
    stop = params.get("stop")
    if stop is not None:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("stream"):
        out["stream"] = True
    if params.get("user") is not None:
        out["metadata"] = {"user_id": params["user"]}
    return out


def translate_messages(raw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``system`` text blocks (system and developer messages, in order) and the conversation.

    Consecutive ``tool`` messages become one user turn of ``tool_result`` blocks, as
    Anthropic wants the results of one assistant turn's calls together."""
    if not isinstance(raw, list):
        raise RequestError("'messages' must be an array", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise refuse(f"{where} must be an object whose role is one of {sorted(_ROLES)}", f"{where}.role")
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{where}.content"))
        elif role == "tool":
            result = _tool_result(message, where)
            previous = turns[-1] if turns else None
            if previous is not None and previous.get("_tools"):
                previous["content"].append(result)
            else:
                turns.append({"role": "user", "content": [result], "_tools": True})
        elif role == "user":
            turns.append({"role": "user", "content": _user_content(message.get("content"), f"{where}.content")})
        else:
            turns.append({"role": "assistant", "content": _assistant_content(message, where)})
    for turn in turns:
        turn.pop("_tools", None)
    return system, turns


def _text_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise refuse(f"{where} must be a string or an array of text parts", where)
    blocks = []
    for j, part in enumerate(content):
        if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
            raise refuse(f"{where}[{j}] must be a text part here", f"{where}[{j}]")
        blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise refuse(f"{where} must be a string or an array of content parts", where)
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), f"{where}[{j}].image_url"))
        else:
            raise refuse(f"{where}[{j}]: content parts of type {kind!r} are not supported "
                         "(text and image_url are)", f"{where}[{j}].type")
    return blocks


def image_block(image: Any, where: str) -> dict[str, Any]:
    """An ``image_url`` part as an Anthropic image block: a ``data:`` URL inline, else by URL."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise refuse(f"{where} must carry a url", where)
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not media_type.startswith("image/"):
            raise refuse(f"{where}: a data URL must be data:image/<type>;base64,<data>", where)
        try:
            binascii.a2b_base64(data.encode(), strict_mode=True)
        except (binascii.Error, ValueError):
            raise refuse(f"{where}: the data URL's image is not valid base64", where) from None
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise refuse(f"{where}: an image URL must be https://, http:// or a base64 data: URL", where)


def _assistant_content(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    blocks = [] if content is None else [b for b in _text_blocks(content, f"{where}.content") if b["text"]]
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise refuse(f"{where}.tool_calls must be an array", f"{where}.tool_calls")
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not (isinstance(function, dict) and isinstance(call.get("id"), str)
            and isinstance(function.get("name"), str)):
        raise refuse(f"{where} must have an id and a function with a name", where)
    arguments = function.get("arguments") or "{}"
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise refuse(f"{where}.function.arguments must be a JSON object (Anthropic's tool input)",
                     f"{where}.function.arguments")
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": parsed}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise refuse(f"{where}: a tool message needs its tool_call_id", f"{where}.tool_call_id")
    content = message.get("content")
    result = content if isinstance(content, str) else _text_blocks(content, f"{where}.content")
    return {"type": "tool_result", "tool_use_id": call_id, "content": result}


def _tool(i: int, tool: Any) -> dict[str, Any]:
    where = f"tools[{i}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not (isinstance(tool, dict) and tool.get("type") == "function" and isinstance(function, dict)
            and isinstance(function.get("name"), str)):
        raise refuse(f"{where}: only function tools with a name are supported", where)
    extra = [f"{where}.{k}" for k, v in tool.items() if k not in ("type", "function") and v is not None]
    extra += [f"{where}.function.{k}" for k, v in function.items() if k not in _FUNCTION_KEYS and v is not None]
    if extra:  # dropped, the tool would be another one under the same key
        raise refuse(f"{extra[0]} has no place in Anthropic's tools", extra[0])
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    if function.get("strict") is True:  # Anthropic's strict tool use (false is the default of both)
        out["strict"] = True
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        out = None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) \
            and isinstance(choice["function"].get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise refuse("'tool_choice' must be auto, none, required or a named function", "tool_choice")
    if parallel is False:  # LiteLLM's mapping of parallel_tool_calls=false
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out
