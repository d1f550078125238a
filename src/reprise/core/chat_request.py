"""What a chat request's body decides by itself, worked out once per distinct body.

Everything a cache hit needs from the body (the model, the key hash, streamed or not,
the ``cache`` controls, the usage chunk) is a pure function of its bytes. The same
bytes arrive again and again (that is why they hit), so :class:`ChatFactsMemo` keeps
the facts by the bytes: a repeat skips parsing, validation and hashing (~5 µs of a
~40 µs hit, in process). The parsed body itself is not kept: it is made again only
when a miss needs it. Only valid bodies are kept (an invalid one raises, every time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reprise.core.controls import NO_CONTROLS, CacheControls, parse_controls
from reprise.core.keys import chat_key_hash
from reprise.core.request import asks_usage, require_model, validate_chat


@dataclass(frozen=True, slots=True)
class ChatFacts:
    """A valid chat body's facts."""

    model: str
    key_hash: str
    stream: bool
    asks_usage: bool
    refuses_usage: bool
    """``stream_options.include_usage: false``, said explicitly: its stream comes without usage."""
    body_controls: Any
    """The body's ``cache`` object as sent (combined with a ``Cache-Control`` header per request)."""
    controls: CacheControls
    """The controls when the request has no ``Cache-Control`` header (the common case)."""


def chat_facts(body: dict[str, Any]) -> ChatFacts:
    """The facts of ``body``; RequestError (400) naming the first malformed field."""
    model = require_model(body)
    validate_chat(body)
    cache = body.get("cache")
    options = body.get("stream_options")
    refuses = isinstance(options, dict) and "include_usage" in options and not options["include_usage"]
    return ChatFacts(model, chat_key_hash(body), body.get("stream") is True, asks_usage(body), refuses, cache,
                     parse_controls(cache) if cache is not None else NO_CONTROLS)


def controls_of(facts: ChatFacts, cache_control_header: str | None) -> CacheControls:
    return parse_controls(facts.body_controls, cache_control_header) if cache_control_header else facts.controls


class ChatFactsMemo:
    """Facts by body bytes, bounded: :data:`MAX_BODY` bytes a body, :data:`MAX_BYTES` in all."""

    MAX_BODY = 64 * 1024
    MAX_BYTES = 16 * 2**20
    ENTRY_OVERHEAD = 400
    """Bytes an entry holds besides its body (the facts, the hash string, the dict slot): measured ~374."""

    def __init__(self) -> None:
        self._facts: dict[bytes, ChatFacts] = {}
        self._bytes = 0

    def get(self, raw: bytes) -> ChatFacts | None:
        return self._facts.get(raw) if len(raw) <= self.MAX_BODY else None

    def put(self, raw: bytes, facts: ChatFacts) -> None:
        if len(raw) > self.MAX_BODY or raw in self._facts:
            return
        size = len(raw) + self.ENTRY_OVERHEAD
        if self._bytes + size > self.MAX_BYTES:  # full: start again (cheaper than tracking recency)
            self._facts.clear()
            self._bytes = 0
        self._facts[raw] = facts
        self._bytes += size
