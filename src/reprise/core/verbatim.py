"""The APIs cached verbatim: OpenAI's Responses API and legacy text completions.

A request to ``/responses`` or ``/completions`` is forwarded to the deployment's own
endpoint of the same name and its answer is kept exactly as the provider sent it: a
plain answer as its JSON bytes, a streamed one as its sequence of events
(:mod:`reprise.core.sse_record`). This module is the pure part: what a body must look
like, which bodies are never cached and why, the key, and which answers may be stored.

The key rule is stricter than chat's (:mod:`reprise.core.keys`): *everything forwarded
is hashed*, ``stream``, ``stream_options`` and ``user`` included, because a stored
answer is replayed in the form it was received (a stream is not a plain answer here)
and a Responses answer echoes the request's own parameters (``user``, ``metadata``,
``temperature``...), so two bodies that differ anywhere forwarded have different
answers. The fields of :data:`~reprise.core.keys.GATEWAY_ONLY_PARAMS` are neither
forwarded nor hashed, except ``metadata`` on ``/responses``: there it is OpenAI's own
parameter (stored with the response and echoed in it), so it is forwarded and hashed.
The route's kind is hashed first, so a ``/completions`` body can never share a key
with a chat or a ``/responses`` body.

Never cached (forwarded as a bypass): a Responses request with ``background: true``
(its answer is a queued response, not the answer) or with ``conversation`` (the
conversation is state the provider changes with every response added to it: the same
body can ask a different question later, and a hit would not add to it), or with a
``prompt`` template named without its ``version`` (the template's *current* version is
used, which its owner can change under the same body; found from outside: the answer to
version 1 was served after version 2 was published; a pinned version is immutable and
cached). A request
with ``previous_response_id`` *is* cached, keyed by the id: a stored response is
immutable, so the id fixes the context as surely as the full history would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from reprise.core.keys import FLOAT_PARAMS, GATEWAY_ONLY_PARAMS, hash_params
from reprise.core.request import MAX_CHOICES, require_model, require_object
from reprise.core.sse_events import is_failure
from reprise.errors import RequestError

RESPONSES = "responses"
COMPLETIONS = "completions"
_RESPONSES_DROPPED = GATEWAY_ONLY_PARAMS - {"metadata"}


@dataclass(frozen=True, slots=True)
class VerbatimFacts:
    """What a valid body decides by itself."""

    kind: str
    model: str
    stream: bool
    key_hash: str
    bypass: str | None
    """Why this request is never cached (see the module docstring); None when it may be."""


def forwarded(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """What of ``body`` is sent to the provider (its ``model`` is then the deployment's)."""
    dropped = _RESPONSES_DROPPED if kind == RESPONSES else GATEWAY_ONLY_PARAMS
    return {name: value for name, value in body.items() if name not in dropped}


def key_hash(kind: str, body: dict[str, Any]) -> str:
    """sha256 over the kind and every forwarded field (nulls dropped, sampling floats normalised)."""
    params: dict[str, Any] = {}
    for name, value in forwarded(kind, body).items():
        if value is None:
            continue
        if name in FLOAT_PARAMS and type(value) is int:
            value = float(value)
        params[name] = value
    return hash_params(kind, params)


def _check(body: dict[str, Any], name: str, types: tuple[type, ...], what: str) -> None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) and bool not in types or not isinstance(value, types)):
        raise RequestError(f"'{name}' must be {what}", param=name)


def responses_facts(body: Any) -> VerbatimFacts:
    """The facts of a ``POST /responses`` body; RequestError (400) naming a malformed field."""
    body = require_object(body)
    model = require_model(body)
    for name in ("stream", "background", "store"):
        _check(body, name, (bool,), "a boolean")
    _check(body, "input", (str, list), "a string or an array")
    _check(body, "previous_response_id", (str,), "a string")
    _check(body, "conversation", (str, dict), "a string or an object")
    _check(body, "metadata", (dict,), "an object")
    _check(body, "prompt", (dict,), "an object")
    bypass = None
    if body.get("background") is True:
        bypass = "background"
    elif body.get("conversation") is not None:
        bypass = "conversation"
    elif isinstance(body.get("prompt"), dict) and not body["prompt"].get("version"):
        bypass = "prompt_version"
    return VerbatimFacts(RESPONSES, model, body.get("stream") is True, key_hash(RESPONSES, body), bypass)


def completions_facts(body: Any) -> VerbatimFacts:
    """The facts of a ``POST /completions`` body; RequestError (400) naming a malformed field."""
    body = require_object(body)
    model = require_model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise RequestError("'prompt' is a required property", param="prompt")
    _check(body, "prompt", (str, list), "a string or an array")
    for name in ("stream", "echo"):
        _check(body, name, (bool,), "a boolean")
    _check(body, "stream_options", (dict,), "an object")
    for name in ("n", "best_of"):
        _check(body, name, (int,), "an integer")
        value = body.get(name)
        if value is not None and not 1 <= value <= MAX_CHOICES:
            raise RequestError(f"'{name}' must be between 1 and {MAX_CHOICES}", param=name)
    return VerbatimFacts(COMPLETIONS, model, body.get("stream") is True, key_hash(COMPLETIONS, body), None)


# -- the provider's plain answers ------------------------------------------------------------

def judge_response(answer: Any) -> bool | None:
    """A 2xx ``/responses`` answer: True to store (``status: completed``), False to send only
    (``incomplete``, ``queued``...), None when it is no Response object or carries ``error``
    (the provider failed, whatever its ``status`` says)."""
    if not isinstance(answer, dict) or answer.get("object") != "response" or answer.get("error") is not None:
        return None
    return answer.get("status") == "completed"


def judge_completion(answer: Any) -> bool | None:
    """A 2xx ``/completions`` answer: True to store (every choice finished), False to send
    only, None when it is no ``text_completion`` or is a failure (carries ``error``, or is
    vLLM's ``"object": "error"``), as a streamed ``error`` event says."""
    if not isinstance(answer, dict) or is_failure(None, answer):
        return None
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, dict) for c in choices):
        return None
    return all(c.get("finish_reason") for c in choices)


JUDGES: dict[str, Callable[[Any], bool | None]] = {RESPONSES: judge_response, COMPLETIONS: judge_completion}


def entry_meta(kind: str, body: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """What the admin views show about an entry: kind, model, a prompt preview, token usage."""
    shown = body.get("input" if kind == RESPONSES else "prompt")
    preview = shown if isinstance(shown, str) else orjson.dumps(shown).decode()
    name = "responses" if kind == RESPONSES else "text_completion"
    return {"kind": name, "model": body.get("model"), "preview": preview[:120], "usage": answer.get("usage")}
