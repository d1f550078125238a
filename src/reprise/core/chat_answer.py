"""What a plain (non-streamed) chat answer is: one to store, one only to send, or a failure.

A plain and a streamed request share one entry, so the rules are the stream's
(:attr:`reprise.core.streaming.StreamAssembler.complete`).
"""

from __future__ import annotations

from typing import Any

from reprise.core.sse_events import is_failure


def is_chat_completion(obj: Any) -> bool:
    """A dict with a non-empty list ``choices`` of dicts that each carry a ``message`` dict.

    The driver stores a 2xx answer only when it is one: anything else is the provider's
    failure, not an answer to replay.
    """
    if not isinstance(obj, dict):
        return False
    choices = obj.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
    )


def judge_chat_completion(obj: Any) -> bool | None:
    """A 2xx plain chat answer: True to store, False to send only, None for the provider's failure.

    The same rules as a stream's (:attr:`StreamAssembler.complete`), since a plain and a
    streamed request share one entry: an answer carrying ``error`` (or vLLM's ``"object":
    "error"``, :func:`is_failure`) is a failure however
    well its choices look, and one with a choice that has no ``finish_reason`` was cut
    short. That one is still the provider's answer to send, but never a hit to replay.
    """
    if not is_chat_completion(obj) or is_failure(None, obj):
        return None
    return all(c.get("finish_reason") for c in obj["choices"])
