"""Per-chunk values over HTTP: a streamed hit carries each chunk's own top-level fields.

A provider may send a top-level field whose value changes from chunk to chunk: OpenAI's
``obfuscation`` padding (on by default), a vendor's counter, usage on every chunk. A stream
is stored as its merged plain answer, which keeps one value per field (the last); the
gateway then keeps the provider's events beside it (core/chunk_record.py) and a streamed
hit sends them as they came. Through ``reprise serve`` against a scripted stand-in
provider (tests/support/scripted_standin.py), in every direction a stored answer is read.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess
from tests.support.scripted_standin import ScriptedStandIn, scripted_config, sse

BASE = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "m"}
USAGE = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def per_chunk_events() -> list[bytes]:
    """The finding's stream: ``obfuscation`` and ``x_seq`` differ in every chunk, the usage chunk has neither."""
    return [
        sse({**BASE, "obfuscation": "Qz1", "x_seq": 1,
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]}),
        sse({**BASE, "obfuscation": "pL", "x_seq": 2,
             "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]}),
        sse({**BASE, "obfuscation": "z", "x_seq": 3,
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse({**BASE, "choices": [], "usage": USAGE}),
        sse("[DONE]"),
    ]


@pytest.fixture(scope="module")
def standin() -> Iterator[ScriptedStandIn]:
    with ScriptedStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def client(standin: ScriptedStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    gateway = GatewayProcess(scripted_config(standin, MASTER_KEY), tmp_path_factory.mktemp("chunks")).start()
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=10) as c:
        yield c
    gateway.stop()


def scripted(standin: ScriptedStandIn, events: list[bytes] | None = None,
             answer: dict[str, Any] | None = None, delay: float = 0.0) -> dict[str, Any]:
    """A request for a model of this test's own, answered by the script."""
    model = f"m-{uuid.uuid4().hex[:8]}"
    standin.script(model, events, answer, delay)
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def stream(client: httpx.Client, body: dict[str, Any], usage: bool | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The cache status and the JSON chunks of a streamed answer (ending with [DONE])."""
    extra: dict[str, Any] = {"stream": True}
    if usage is not None:
        extra["stream_options"] = {"include_usage": usage}
    with client.stream("POST", "/chat/completions", json={**body, **extra}) as r:
        data = r.read()
    assert r.status_code == 200, data
    return r.headers["x-reprise-cache"], chunks_of(data)


def chunks_of(data: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body, which must end with ``data: [DONE]``."""
    events = [e.removeprefix(b"data: ") for e in data.strip().split(b"\n\n")]
    assert events[-1] == b"[DONE]", data
    return [orjson.loads(e) for e in events[:-1]]


def fields(chunks: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(chunk.get(name) for name in names) for chunk in chunks]


@pytest.mark.parametrize("usage", [None, True])
def test_a_streamed_hit_gives_each_chunk_its_own_values(client: httpx.Client, standin: ScriptedStandIn,
                                                        usage: bool | None) -> None:
    body = scripted(standin, per_chunk_events())
    status, miss = stream(client, body, usage)
    assert status == "miss"
    sent = [("Qz1", 1), ("pL", 2), ("z", 3)] + ([(None, None)] if usage else [])
    assert fields(miss, "obfuscation", "x_seq") == sent
    status, hit = stream(client, body, usage)
    assert status == "hit"
    assert hit == miss  # every chunk as the provider sent it, in order
    assert standin.calls(body["model"]) == 1


def test_the_usage_chunk_of_a_recorded_stream_follows_the_clients_choice(client: httpx.Client,
                                                                         standin: ScriptedStandIn) -> None:
    """Stored by a client that did not ask for usage; replayed with it to one that asks, and without
    it again to one that does not: the gateway asked the provider for usage either way."""
    body = scripted(standin, per_chunk_events())
    assert stream(client, body)[0] == "miss"
    status, with_usage = stream(client, body, usage=True)
    assert status == "hit"
    assert [c.get("usage") for c in with_usage] == [None, None, None, USAGE]
    assert fields(with_usage, "obfuscation", "x_seq")[:3] == [("Qz1", 1), ("pL", 2), ("z", 3)]
    status, without = stream(client, body, usage=False)
    assert status == "hit"
    assert without == with_usage[:3]


def test_requests_that_waited_for_the_stream_get_its_chunks_too(client: httpx.Client,
                                                                standin: ScriptedStandIn) -> None:
    """Identical requests in flight together: one calls the provider, the others are sent its
    answer when it is stored (shared, not read back), with the same per-chunk values."""
    body = {**scripted(standin, per_chunk_events(), delay=0.5), "stream": True}

    async def together() -> list[tuple[str, bytes]]:
        async with httpx.AsyncClient(base_url=str(client.base_url), headers=AUTH, timeout=10) as c:
            answers = await asyncio.gather(*(c.post("/chat/completions", json=body) for _ in range(4)))
        return [(a.headers["x-reprise-cache"], a.content) for a in answers]

    answers = asyncio.run(together())
    assert [status for status, _ in answers] == ["miss"] * 4
    assert len({data for _, data in answers}) == 1
    assert fields(chunks_of(answers[0][1]), "obfuscation", "x_seq") == [("Qz1", 1), ("pL", 2), ("z", 3)]
    assert standin.calls(body["model"]) == 1


def test_a_plain_hit_of_a_recorded_stream_keeps_the_last_values(client: httpx.Client,
                                                                standin: ScriptedStandIn) -> None:
    """A provider's plain answer carries one value per field: the merged answer keeps the last."""
    body = scripted(standin, per_chunk_events())
    stream(client, body)
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "hit"
    answer = plain.json()
    assert (answer["obfuscation"], answer["x_seq"], answer["object"]) == ("z", 3, "chat.completion")
    assert answer["choices"][0]["message"]["content"] == "Hello"
    assert answer["usage"] == USAGE


def test_a_plain_answer_replayed_as_a_stream_has_its_one_value_in_every_chunk(client: httpx.Client,
                                                                              standin: ScriptedStandIn) -> None:
    answer = {"id": "chatcmpl-2", "object": "chat.completion", "created": 5, "model": "m", "x_seq": 7,
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                           "finish_reason": "stop"}], "usage": USAGE}
    body = scripted(standin, answer=answer)
    assert client.post("/chat/completions", json=body).headers["x-reprise-cache"] == "miss"
    status, chunks = stream(client, body)
    assert status == "hit"
    assert {chunk["x_seq"] for chunk in chunks} == {7}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello"


def test_a_choice_level_per_chunk_value_is_kept_too(client: httpx.Client, standin: ScriptedStandIn) -> None:
    events = [
        sse({**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "a"}, "x_token": 10,
                                  "finish_reason": None}]}),
        sse({**BASE, "choices": [{"index": 0, "delta": {"content": "b"}, "x_token": 11, "finish_reason": "stop"}]}),
        sse("[DONE]"),
    ]
    body = scripted(standin, events)
    _, miss = stream(client, body)
    status, hit = stream(client, body)
    assert status == "hit"
    assert [c["choices"][0]["x_token"] for c in hit] == [10, 11]
    assert hit == miss


def test_a_stream_whose_chunks_agree_is_replayed_from_its_answer(client: httpx.Client,
                                                                 standin: ScriptedStandIn) -> None:
    """Nothing was lost in the merge: nothing but the answer is kept, and the hit is rendered from it
    (one content chunk here, where the provider sent two)."""
    events = [
        sse({**BASE, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
                                  "finish_reason": None}]}),
        sse({**BASE, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": None}]}),
        sse({**BASE, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        sse("[DONE]"),
    ]
    body = scripted(standin, events)
    stream(client, body)
    status, hit = stream(client, body)
    assert status == "hit"
    assert [c["choices"][0]["delta"].get("content") for c in hit] == ["", "Hello", None]
