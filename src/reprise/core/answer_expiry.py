"""When a provider says its answer stops being valid: an entry must not outlive it.

OpenAI's audio answers (``modalities: ["text", "audio"]``) carry ``message.audio.id`` and
``expires_at`` (epoch seconds): a later turn refers to the audio by that id, which the
provider forgets at ``expires_at``. Found from outside: a hit after it served a dead id,
and the client's next turn built on it failed. So an answer's entry expires no later than
the earliest ``expires_at`` it carries. Pure; the store applies it (:mod:`reprise.store_access`).
"""

from __future__ import annotations

from typing import Any

import orjson

_MARK = b'"expires_at"'


def provider_expiry(body: bytes) -> float | None:
    """The earliest ``choices[].message.audio.expires_at`` of a chat completion's bytes (None: none)."""
    if _MARK not in body:  # the common case costs one scan of the bytes
        return None
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    choices = answer.get("choices") if isinstance(answer, dict) else None
    found = []
    for choice in choices if isinstance(choices, list) else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        audio = message.get("audio") if isinstance(message, dict) else None
        expires = audio.get("expires_at") if isinstance(audio, dict) else None
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            found.append(float(expires))
    return min(found) if found else None
