"""Anthropic Messages requests (``POST /v1/messages``) as the gateway's canonical chat body.

Why a translation rather than a second cache path: the answer is cached, keyed, shared in
flight and replayed by the one chat driver, so an Anthropic client gets exactly what an
OpenAI client gets. The body built here *is* the request: its key is computed from it,
and it (less the gateway-only fields) is what the provider receives. Nothing of the
Anthropic body reaches the provider without passing through it, so the key covers all
that is forwarded.

What maps to what (https://docs.anthropic.com/en/api/messages; LiteLLM's adapter,
``litellm/llms/anthropic/experimental_pass_through``, does the same):

- ``system`` (a string or text blocks) -> a first ``system`` message;
- ``text`` blocks -> text; ``image`` blocks (``base64`` or ``url`` source) -> ``image_url`` parts;
- assistant ``tool_use`` blocks -> ``tool_calls`` (``input`` as compact JSON ``arguments``);
- user ``tool_result`` blocks -> ``role: tool`` messages, before the rest of that user turn;
- ``tools`` -> function tools (``strict`` -> ``function.strict``); ``tool_choice``
  auto/any/tool/none -> auto/required/function/none, ``disable_parallel_tool_use`` ->
  ``parallel_tool_calls: false``;
- ``stop_sequences`` -> ``stop``; ``max_tokens``, ``temperature``, ``top_p`` as they are;
  ``top_k`` is forwarded as ``top_k`` (vLLM, Ollama and others read it; OpenAI refuses it
  with a 400, which is passed back); ``metadata.user_id`` -> ``user``; ``stream`` (without
  ``stream_options``: the usage chunk is the gateway's request, not the client's);
  Reprise's ``cache`` controls as they are.

Dropped because they cannot change a non-Anthropic provider's answer: ``cache_control``
on the request, its blocks and tools (Anthropic's prompt-caching hint), ``is_error`` on ``tool_result``
(the chat API has no place for it), ``thinking: {"type": "disabled"}``. Anything else the
translation does not know (a block type, a top-level field, a server tool, a key of a
message, block, tool, image source, ``tool_choice`` or ``metadata``: ``tools[0].input_examples``,
``messages[0].content[0].citations``) is refused with a 400 naming it, rather than silently
dropped: the answer would be to another question, under a key that does not tell the two
apart. A key whose value is null says nothing, and is read as absent, as everywhere in the
canonical form (the SDKs write ``"citations": null`` into text blocks sent back).

A single text block is written as a plain string, so ``"content": "hi"`` and
``[{"type": "text", "text": "hi"}]`` are one request (and one cache key), as they are one
question.
"""

from __future__ import annotations

from typing import Any

import orjson

from reprise.core.anthropic_response import EMPTY_VALUES
from reprise.core.controls import parse_controls
from reprise.core.request import require_model
from reprise.errors import RequestError

#: Top-level fields this translation reads. Any other is refused (400) by name.
KNOWN_FIELDS = frozenset({
    "model", "messages", "system", "max_tokens", "stop_sequences", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "stream", "thinking", "cache", "cache_control",
})
#: ``count_tokens`` takes the same body without the answer's settings (Anthropic's own schema).
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "cache",
                          "cache_control"})

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}
#: The keys each object of the body may have: any other is refused (400) by its path.
_MESSAGE_KEYS = frozenset({"role", "content"})
_TEXT_KEYS = frozenset({"type", "text", "cache_control"})
_IMAGE_KEYS = frozenset({"type", "source", "cache_control"})
_SOURCE_KEYS = {"base64": frozenset({"type", "media_type", "data"}), "url": frozenset({"type", "url"})}
_TOOL_USE_KEYS = frozenset({"type", "id", "name", "input", "cache_control"})
_TOOL_RESULT_KEYS = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"})
_TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "strict", "cache_control"})
_TOOL_CHOICE_KEYS = frozenset({"type", "disable_parallel_tool_use"})
_METADATA_KEYS = frozenset({"user_id"})


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body equivalent to the Anthropic Messages ``body``; 400 on what it cannot map."""
    _check_fields(body, KNOWN_FIELDS)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError("'max_tokens' is required and must be a positive integer", param="max_tokens")
    out = _conversation(body)
    out["max_tokens"] = max_tokens
    _sampling(body, out)
    user = _user_id(body.get("metadata"))
    if user is not None:
        out["user"] = user
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", param="stream")
    if stream:
        # No ``stream_options``: the client said nothing about a usage chunk. The usage that
        # Anthropic's ``message_delta`` reports is asked for by the gateway as its own choice
        # (``ChatRequest.reports_usage``), so a provider refusing the option is asked again without it.
        out["stream"] = True
    return out


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    """``temperature``, ``top_p``, ``top_k`` and ``stop_sequences`` into ``out``, checked."""
    for name in ("temperature", "top_p", "top_k"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"'{name}' must be a number", param=name)
        out[name] = value
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise RequestError("'stop_sequences' must be an array of strings", param="stop_sequences")
        if stops:
            out["stop"] = stops


def count_request(body: dict[str, Any]) -> dict[str, Any]:
    """A ``count_tokens`` body, checked: its fields (a 400 naming any other), its model and ``cache``
    controls; returned without those controls (they steer the gateway) and without null fields.

    This is what an ``anthropic/`` deployment's own ``count_tokens`` receives (with its model name).
    Its content is left for Anthropic to judge, as Anthropic counts what it can answer."""
    _check_fields(body, COUNT_FIELDS)
    require_model(body)
    if body.get("cache") is not None:
        parse_controls(body["cache"])  # checked as on /v1/messages, though nothing here is cached
    return {name: value for name, value in body.items() if name != "cache" and value is not None}


def count_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat body of a ``count_tokens`` request: its conversation and tools, nothing else."""
    return _conversation(count_request(body))


def _conversation(body: dict[str, Any]) -> dict[str, Any]:
    """Model, messages (system first), tools and tool choice: what both routes share."""
    model = require_model(body)
    thinking = body.get("thinking")
    if thinking is not None and not (isinstance(thinking, dict) and thinking.get("type") == "disabled"):
        raise RequestError("'thinking' is not supported: the models behind this gateway are not Anthropic's",
                           param="thinking")
    hint = body.get("cache_control")
    if hint is not None and not isinstance(hint, dict):
        raise RequestError("'cache_control' must be an object", param="cache_control")
    messages = _system(body.get("system"))
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(raw):
        messages.extend(_message(message, f"messages[{i}]"))
    out: dict[str, Any] = {"model": model, "messages": messages}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError("'tools' must be an array", param="tools")
        if tools:
            out["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if body.get("tool_choice") is not None:
        out.update(_tool_choice(body["tool_choice"]))
    if "cache" in body:
        out["cache"] = body["cache"]
    return out


def _check_fields(body: dict[str, Any], known: frozenset[str]) -> None:
    for name in body:
        if name not in known:
            raise RequestError(f"'{name}' is not supported by this gateway's /v1/messages", param=name)


def _check_keys(obj: dict[str, Any], known: frozenset[str], where: str) -> None:
    """A key of ``obj`` (at ``where``) not in ``known`` that holds something is a 400 naming its
    path. Null and empty values (``"citations": []``, as an SDK echoes a block back) carry
    nothing to drop, as the ``anthropic/`` adapter reads a provider's blocks."""
    for name, value in obj.items():
        if name not in known and value not in EMPTY_VALUES:
            raise RequestError(f"'{where}.{name}' is not supported by this gateway's /v1/messages",
                               param=f"{where}.{name}")


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise RequestError("'metadata' must be an object", param="metadata")
    _check_keys(metadata, _METADATA_KEYS, "metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise RequestError("'metadata.user_id' must be a string", param="metadata.user_id")
    return user


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if isinstance(system, list):
        parts = [_text_block(block, f"system[{i}]") for i, block in enumerate(system)]
        return [{"role": "system", "content": _joined(parts)}] if parts else []
    raise RequestError("'system' must be a string or an array of text blocks", param="system")


def _text_block(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise RequestError(f"'{where}' must be a text block", param=where)
    _check_keys(block, _TEXT_KEYS, where)
    return {"type": "text", "text": block["text"]}


def _joined(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part is the plain string (the same question, so the same key); else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise RequestError(f"'{where}' must be an object", param=where)
    _check_keys(message, _MESSAGE_KEYS, where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise RequestError(f"'{where}.role' must be 'user' or 'assistant'", param=f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise RequestError(f"'{where}.content' must be a string or an array of blocks", param=f"{where}.content")
    return _assistant(content, where) if role == "assistant" else _user(content, where)


def _user(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        at = f"{where}.content[{i}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            parts.append(_text_block(block, at))
    return results + ([{"role": "user", "content": _joined(parts)}] if parts else [])


def _assistant(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        at = f"{where}.content[{i}]"
        if isinstance(block, dict) and block.get("type") == "tool_use":
            calls.append(_tool_call(block, at))
        else:
            parts.append(_text_block(block, at))
    message: dict[str, Any] = {"role": "assistant", "content": _joined(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    ident, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(ident, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise RequestError(f"'{where}' must have a string 'id' and 'name' and an object 'input'", param=where)
    _check_keys(block, _TOOL_USE_KEYS, where)
    return {"id": ident, "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    ident, content = block.get("tool_use_id"), block.get("content", "")
    if not isinstance(ident, str):
        raise RequestError(f"'{where}.tool_use_id' must be a string", param=f"{where}.tool_use_id")
    _check_keys(block, _TOOL_RESULT_KEYS, where)
    if isinstance(content, list):
        content = _joined([_text_block(part, f"{where}.content[{i}]") for i, part in enumerate(content)]) or ""
    elif not isinstance(content, str):
        raise RequestError(f"'{where}.content' must be a string or text blocks", param=f"{where}.content")
    return {"role": "tool", "tool_call_id": ident, "content": content}


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    _check_keys(block, _IMAGE_KEYS, where)
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if isinstance(source, dict) and kind in _SOURCE_KEYS:
        _check_keys(source, _SOURCE_KEYS[kind], f"{where}.source")
    if kind == "base64" and isinstance(source, dict):
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    elif kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise RequestError(f"'{where}.source' must be a base64 (media_type, data) or url source", param=f"{where}.source")


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
        raise RequestError(f"'{where}' must be a custom tool (Anthropic's server tools need Anthropic)", param=where)
    name, schema, description = tool.get("name"), tool.get("input_schema"), tool.get("description")
    if not isinstance(name, str) or not isinstance(schema, dict):
        raise RequestError(f"'{where}' must have a string 'name' and an object 'input_schema'", param=where)
    _check_keys(tool, _TOOL_KEYS, where)
    function: dict[str, Any] = {"name": name}
    if description is not None:
        if not isinstance(description, str):
            raise RequestError(f"'{where}.description' must be a string", param=f"{where}.description")
        function["description"] = description
    function["parameters"] = schema
    strict = tool.get("strict")
    if strict is not None:  # Anthropic's strict tool use is OpenAI's strict function calling
        if not isinstance(strict, bool):
            raise RequestError(f"'{where}.strict' must be a boolean", param=f"{where}.strict")
        function["strict"] = strict
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any] = {}
    if kind in _TOOL_CHOICE:
        out["tool_choice"] = _TOOL_CHOICE[kind]
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise RequestError("'tool_choice' must be {'type': 'auto'|'any'|'none'} or {'type': 'tool', 'name': ...}",
                           param="tool_choice")
    assert isinstance(choice, dict)
    _check_keys(choice, _TOOL_CHOICE_KEYS | ({"name"} if kind == "tool" else set()), "tool_choice")
    parallel = choice.get("disable_parallel_tool_use")
    if parallel is not None and not isinstance(parallel, bool):
        raise RequestError("'tool_choice.disable_parallel_tool_use' must be a boolean",
                           param="tool_choice.disable_parallel_tool_use")
    if parallel and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def estimate_tokens(chat: dict[str, Any]) -> int:
    """A rough count of the input tokens of a translated body: its text at ~4 characters a token.

    An estimate, not the provider's count (no tokenizer ships with the gateway and none may be
    fetched at run time): the server says so in a header. Images count as Anthropic's
    documented ~1,600 tokens of a large image; each message adds a few tokens of framing.
    """
    chars, images = 0, 0
    for message in chat["messages"]:
        chars += 16  # role and framing
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            if isinstance(part, str):
                chars += len(part)
            elif isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
            elif isinstance(part, dict):
                chars += len(str(part.get("text", "")))
        for call in message.get("tool_calls") or ():
            chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    for tool in chat.get("tools") or ():
        chars += len(orjson.dumps(tool))
    return max(1, -(-chars // 4) + 1600 * images)
