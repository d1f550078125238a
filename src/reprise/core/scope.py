"""Semantic scope: the hard partition inside which prompts are compared by similarity.

Only the final user message's text is matched by meaning. Everything else that decides
the answer (model, sampling and format parameters, tools, the system prompt, every
earlier turn, every field of the final message but its text, such as ``name``) must be
*identical*: it is hashed, exactly like an exact key but with the last message's text
removed, and the hash is used as a filter / a separate index, never mixed into the
embedded text. So "yes, cancel it" after a chat about a streaming plan can never
be answered from "yes, cancel it" after a chat about a gym membership.

The namespace (and so the tenant partition, which the gateway folds into it) is part
of the hash. Requests that are not eligible (the last message is not a user message of
plain text, several choices are asked for, or the text is longer than
:data:`MAX_SEMANTIC_CHARS`) get no scope and skip semantic caching (the exact cache still
serves them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reprise.core.keys import canonical_params, hash_params

#: The longest final user text that is embedded. Embedding costs grow with the text (USE: 20 ms
#: for 2,000 English characters, 58 ms for 2,000 Chinese ones, 258 ms for 8,000) and run under the
#: model's one lock; found from outside: one 0.9 MB prompt held it 16 s, and every other client's
#: lookup waited behind it. Truncating instead would let long prompts sharing a beginning match.
MAX_SEMANTIC_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SemanticQuery:
    """Where to look (``scope``) and what to compare (``text``, the final user message)."""

    scope: str
    text: str


def final_user_text(message: Any) -> str | None:
    """The text of a user message: a string, or text parts only (an image makes it None)."""
    if not isinstance(message, Mapping) or message.get("role") != "user":
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    texts: list[str] = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            return None
        texts.append(part["text"])
    return "\n".join(texts)


def _without_text(message: Mapping[str, Any]) -> dict[str, Any]:
    """The final message with its text taken out: everything else of it must match exactly.

    Only the text is compared by meaning; the rest of the message (``name``, a vendor field,
    a part's ``cache_control``) can change the answer, so it belongs to the scope. Found
    from outside: ``{"role": "user", "name": "bob", ...}`` was answered with what the provider
    wrote for ``name: "alice"``, at similarity 1.0.
    """
    rest = {key: value for key, value in message.items() if key != "content"}
    content = message.get("content")
    if isinstance(content, list):  # text parts only (final_user_text): keep their shape, not their text
        rest["content"] = [{key: value for key, value in part.items() if key != "text"} for part in content]
        if len(content) > 1:
            # The parts are compared joined by newlines: where the joins fall is scoped, so the same
            # characters split differently (["a\nb", "c"] / ["a", "b\nc"], found from outside) differ.
            for shape, part in zip(rest["content"], content, strict=True):
                shape["\0newlines"] = part["text"].count("\n")
    return dict(sorted(rest.items()))


def semantic_query(body: Mapping[str, Any], namespace: str | None) -> SemanticQuery | None:
    """The scope and final user text of a chat request, or None if it is not eligible."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    text = final_user_text(messages[-1])
    if text is None or not text.strip() or len(text) > MAX_SEMANTIC_CHARS:
        return None
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        return None
    params = canonical_params(body)
    params["messages"] = params["messages"][:-1]  # written as in the exact key (keys.hash_params)
    params["\0last"] = _without_text(messages[-1])
    params["\0namespace"] = namespace or ""
    return SemanticQuery(scope=hash_params("chat-semantic", params), text=text)
