"""An entry never outlives what its answer says (OpenAI audio ids die at ``expires_at``)."""

from __future__ import annotations

import orjson

from reprise.backends.memory import MemoryBackend
from reprise.core.answer_expiry import provider_expiry
from reprise.store_access import StoreAccess
from tests.core.test_decoded_memo import Clock


def audio_answer(*expiries: float) -> bytes:
    choices = [{"index": i, "finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "audio": {"id": f"audio_{i}", "expires_at": at, "data": "AAAA",
                                                        "transcript": "hi"}}} for i, at in enumerate(expiries)]
    return orjson.dumps({"id": "c", "object": "chat.completion", "choices": choices})


def test_the_earliest_audio_expiry_is_read_and_other_answers_have_none() -> None:
    assert provider_expiry(audio_answer(2000.0, 1500)) == 1500.0
    assert provider_expiry(b'{"choices":[{"message":{"content":"expires_at"}}]}') is None
    assert provider_expiry(b'{"expires_at": 5') is None  # not JSON: nothing said
    assert provider_expiry(orjson.dumps({"choices": [{"message": {"audio": {"expires_at": True}}}]})) is None


async def test_an_audio_answer_is_kept_no_longer_than_its_id_lives() -> None:
    """Found from outside: a hit after ``expires_at`` served an audio id the provider had forgotten."""
    clock = Clock()  # now = 1000
    store = StoreAccess(MemoryBackend(clock=clock), clock=clock)
    assert await store.write("soon", store.make_entry(audio_answer(1030.0), 600, {}))
    assert await store.write("forever", store.make_entry(audio_answer(1030.0), None, {}))
    assert not await store.write("dead", store.make_entry(audio_answer(990.0), 600, {}))  # already expired
    assert await store.read("dead") is None
    clock.now = 1020
    assert await store.read("soon") is not None and await store.read("forever") is not None
    clock.now = 1031
    assert await store.read("soon") is None and await store.read("forever") is None
