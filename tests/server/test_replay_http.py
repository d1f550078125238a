"""Lossless replay over HTTP: a hit carries everything the provider's answer carried.

Promised by the README ("Replay is lossless"): a stored answer is replayed as JSON or as
SSE, whichever the hit asks for, with every field the provider sent, known or not, at the
top, choice and message/delta level. The stub's ``reasoning`` model answers DeepSeek-style
(``reasoning_content`` deltas, vendor fields everywhere) and ``function-call`` with the
legacy ``function_call``; a cache that rebuilt answers from a fixed schema would drop them.

Streams are assembled here, independently of the gateway's own code, the way OpenAI's SDK
accumulates deltas: strings in a delta are joined per choice index, other values replace.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.server.conftest import MASTER_KEY, GatewayProcess, chat, unique
from tests.support.stub_upstream import FUNCTION_CALL, STOP_REASON, X_EXTRA, X_VENDOR, StubUpstream

#: (miss streamed, hit streamed): every way a stored answer can be written and read back.
COMBINATIONS = [(False, False), (True, True), (False, True), (True, False)]
COMBINATION_IDS = ["plain-plain", "stream-stream", "plain-stream", "stream-plain"]


def _merge(target: dict[str, Any], key: str, value: Any, join: bool) -> None:
    old = target.get(key)
    if value is None:
        target.setdefault(key, None)
    elif join and isinstance(value, str) and isinstance(old, str):
        target[key] = old + value
    elif join and isinstance(value, dict) and isinstance(old, dict):
        for k, v in value.items():
            _merge(old, k, v, join)
    else:
        target[key] = orjson.loads(orjson.dumps(value)) if isinstance(value, dict | list) else value


def sse_chunks(data: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an SSE body, which must end with ``data: [DONE]``."""
    events = [e.removeprefix(b"data: ") for e in data.strip().split(b"\n\n") if e.startswith(b"data: ")]
    assert events and events[-1] == b"[DONE]", data[-200:]
    return [orjson.loads(e) for e in events[:-1]]


def assemble(data: bytes) -> dict[str, Any]:
    """A ``chat.completion``-shaped dict from an SSE body (top/choice level: last non-null wins)."""
    completion: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for chunk in sse_chunks(data):
        for key, value in chunk.items():
            if key not in ("choices", "object"):
                _merge(completion, key, value, join=False)
        for choice in chunk["choices"]:
            slot = choices.setdefault(choice["index"], {"index": choice["index"], "message": {}})
            for key, value in choice.items():
                if key == "delta":
                    for k, v in value.items():
                        _merge(slot["message"], k, v, join=True)
                elif key != "index":
                    _merge(slot, key, value, join=False)
    completion["choices"] = [choices[i] for i in sorted(choices)]
    return completion


def without_nulls(value: Any) -> Any:
    """``value`` with null members dropped at every depth: SSE cannot say ``"refusal": null``."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def fetch(client: httpx.Client, body: dict[str, Any], stream: bool) -> tuple[httpx.Response, dict[str, Any]]:
    """The gateway's answer to ``body``, as a completion dict whichever way it was sent."""
    if not stream:
        response = client.post("/chat/completions", json=body)
        assert response.status_code == 200, response.text
        return response, response.json()
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        data = response.read()
    assert response.status_code == 200, data
    assert response.headers["content-type"].startswith("text/event-stream")
    return response, assemble(data)


def comparable(completion: dict[str, Any]) -> dict[str, Any]:
    """Everything a replay must keep, except the framing (``object``) and ``usage`` (sent to a
    streaming client only when asked for)."""
    return without_nulls({k: v for k, v in completion.items() if k not in ("object", "usage")})


def assert_carries_the_model_specifics(model: str, completion: dict[str, Any]) -> None:
    choice = completion["choices"][0]
    if model == "reasoning":
        assert completion["x_vendor"] == X_VENDOR
        assert choice["stop_reason"] == STOP_REASON and choice["finish_reason"] == "stop"
        assert choice["message"]["reasoning_content"].startswith("The user wants an echo. Call ")
        assert choice["message"]["x_extra"] == X_EXTRA
        assert choice["message"]["content"].startswith("echo: ")
    else:
        assert choice["message"]["function_call"] == FUNCTION_CALL
        assert choice["finish_reason"] == "function_call"


@pytest.mark.parametrize(("miss_stream", "hit_stream"), COMBINATIONS, ids=COMBINATION_IDS)
@pytest.mark.parametrize("model", ["reasoning", "function-call"])
def test_hit_replays_everything_the_miss_carried(client: httpx.Client, upstream: StubUpstream, model: str,
                                                 miss_stream: bool, hit_stream: bool) -> None:
    body = chat(unique(f"replay {model}"), model=model)
    r1, miss = fetch(client, body, miss_stream)
    r2, hit = fetch(client, body, hit_stream)
    assert (r1.headers["x-reprise-cache"], r2.headers["x-reprise-cache"]) == ("miss", "hit")
    assert r2.headers["x-litellm-cache-key"] == r1.headers["x-litellm-cache-key"]
    assert_carries_the_model_specifics(model, miss)
    assert comparable(hit) == comparable(miss)  # ids, reasoning, vendor fields, function_call, finish_reason
    assert upstream.calls_for(model) == 1


def has_usage_chunk(data: bytes) -> bool:
    return any(c["choices"] == [] or c.get("usage") for c in sse_chunks(data))


def stream_bytes(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        return response, response.read()


def test_no_usage_chunk_unless_asked_even_though_usage_is_stored(client: httpx.Client,
                                                                 upstream: StubUpstream) -> None:
    """The gateway asks the provider for usage (to store it) but does not pass it to a client
    that did not ask; a plain hit of the same entry still reports the stored usage."""
    body = chat(unique("usage unasked"), model="reasoning")
    for expected in ("miss", "hit"):
        response, data = stream_bytes(client, body)
        assert response.headers["x-reprise-cache"] == expected
        assert not has_usage_chunk(data), data
    plain = client.post("/chat/completions", json=body)
    assert plain.headers["x-reprise-cache"] == "hit"
    assert plain.json()["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert upstream.calls_for("reasoning") == 1


def test_usage_chunk_when_asked_on_miss_and_hit(client: httpx.Client, upstream: StubUpstream) -> None:
    body = chat(unique("usage asked"), model="reasoning", stream_options={"include_usage": True})
    usages = []
    for expected in ("miss", "hit"):
        response, data = stream_bytes(client, body)
        assert response.headers["x-reprise-cache"] == expected
        last = sse_chunks(data)[-1]
        assert last["choices"] == [] and last["usage"]["total_tokens"] > 0
        usages.append(last["usage"])
    assert usages[0] == usages[1]
    assert usages[0]["completion_tokens_details"]["reasoning_tokens"] > 0


def test_openai_sdk_reads_reasoning_and_vendor_fields_from_a_replayed_stream(gateway: GatewayProcess,
                                                                             upstream: StubUpstream) -> None:
    """What a real application sees: the SDK's ``model_extra`` on deltas and chunks."""
    import openai

    prompt = unique("sdk replay")
    seen = []
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0) as sdk:
        for expected in ("miss", "hit"):
            raw = sdk.chat.completions.with_raw_response.create(
                model="reasoning", messages=[{"role": "user", "content": prompt}], stream=True)
            assert raw.headers["x-reprise-cache"] == expected
            chunks = list(raw.parse())
            deltas = [c.choices[0].delta for c in chunks if c.choices]
            thought = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
            extra = "".join((d.model_extra or {}).get("x_extra") or "" for d in deltas)
            text = "".join(d.content or "" for d in deltas)
            vendor = [(c.model_extra or {}).get("x_vendor") for c in chunks]
            seen.append((thought, extra, text, chunks[0].id))
            assert thought.startswith("The user wants an echo.") and extra == X_EXTRA
            assert text.startswith(f"echo: {prompt} #")
            assert X_VENDOR in vendor
        reply = sdk.chat.completions.with_raw_response.create(
            model="function-call", messages=[{"role": "user", "content": prompt}])
        again = sdk.chat.completions.with_raw_response.create(
            model="function-call", messages=[{"role": "user", "content": prompt}])
    assert seen[0] == seen[1]
    assert again.headers["x-reprise-cache"] == "hit"
    for answer in (reply.parse(), again.parse()):
        call = answer.choices[0].message.function_call
        assert call is not None and (call.name, call.arguments) == (FUNCTION_CALL["name"], FUNCTION_CALL["arguments"])
        assert answer.choices[0].finish_reason == "function_call"
    assert upstream.calls_for("reasoning") == 1 and upstream.calls_for("function-call") == 1


def test_a_large_answer_is_replayed_byte_for_byte_every_time(client: httpx.Client, upstream: StubUpstream) -> None:
    """A ~200 KB answer: too large for the decoded-entry memo, so each hit serves a view of the
    stored bytes (core/entry.py) and each streamed hit the remembered SSE form (ReplayMemo)."""
    body = chat(unique("large " + "the cache answers this from memory " * 6000))
    miss = client.post("/chat/completions", json=body)
    assert miss.status_code == 200 and len(miss.content) > 200_000
    plain = [client.post("/chat/completions", json=body) for _ in range(3)]
    assert [r.headers["x-reprise-cache"] for r in plain] == ["hit"] * 3
    assert all(r.content == miss.content for r in plain)  # the provider's bytes, exactly
    for usage in (False, True):
        options = {"stream_options": {"include_usage": True}} if usage else {}
        streams = [stream_bytes(client, {**body, **options}) for _ in range(3)]
        assert [r.headers["x-reprise-cache"] for r, _ in streams] == ["hit"] * 3
        assert streams[0][1] == streams[1][1] == streams[2][1]
        assert comparable(assemble(streams[0][1])) == comparable(miss.json())
        assert has_usage_chunk(streams[0][1]) == usage
    assert upstream.calls()["chat"] == 1
