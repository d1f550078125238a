"""``POST /v1/completions`` (legacy text completions) through ``reprise serve`` against a stand-in
that speaks only OpenAI's API (tests/support/openai_apis_standin.py), with the official ``openai``
SDK as client: plain and streamed answers cached verbatim, single-flight, failures and cut
streams never stored, cache controls, keys apart from chat's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import AUTH, GatewayProcess, unique
from tests.server.openai_apis_fixtures import openai_apis_fixtures
from tests.support.openai_apis_standin import OpenAIApisStandIn

PATH = "/v1/completions"


standin, gw, sdk = openai_apis_fixtures("completions")


def post(gw: GatewayProcess, body: dict[str, Any], path: str = PATH, **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={**AUTH, **headers}, timeout=10)


def test_plain_miss_then_hit_is_the_providers_json(sdk: openai.OpenAI, standin: OpenAIApisStandIn) -> None:
    prompt = unique()
    first = sdk.completions.with_raw_response.create(model="gpt-4.1", prompt=prompt, max_tokens=16)
    second = sdk.completions.with_raw_response.create(model="gpt-4.1", prompt=prompt, max_tokens=16)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.content == first.content
    assert second.parse().choices[0].text == first.parse().choices[0].text
    assert standin.calls("/v1/completions", prompt) == 1
    assert standin.rejected == []


def test_streamed_miss_then_hit_replays_the_same_chunks(sdk: openai.OpenAI, gw: GatewayProcess,
                                                        standin: OpenAIApisStandIn) -> None:
    body = {"model": "gpt-4.1", "prompt": unique(), "stream": True, "stream_options": {"include_usage": True}}
    first, second = post(gw, body), post(gw, body)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert second.content == first.content
    assert first.content.endswith(b"data: [DONE]\n\n")
    chunks = list(sdk.completions.create(model="gpt-4.1", prompt=body["prompt"], stream=True,
                                         stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert "".join(c.choices[0].text for c in chunks if c.choices) == _text_of(first.content)
    assert _text_of(first.content).startswith(" answer ")
    assert standin.calls("/v1/completions", body["prompt"]) == 1


def _text_of(sse: bytes) -> str:
    """The completion text of a recorded stream, read without the SDK."""
    payloads = [event[len(b"data: "):] for event in sse.split(b"\n\n") if event.startswith(b"data: {")]
    return "".join(c["text"] for p in payloads for c in json.loads(p)["choices"])


def test_stream_options_and_stream_are_in_the_key(gw: GatewayProcess) -> None:
    body = {"model": "gpt-4.1", "prompt": unique(), "stream": True}
    keys = {post(gw, b).headers["x-litellm-cache-key"]
            for b in (body, {**body, "stream_options": {"include_usage": True}}, {**body, "stream": False})}
    assert len(keys) == 3


def test_a_completions_body_never_shares_a_chat_or_responses_key(gw: GatewayProcess) -> None:
    text = unique()
    completion = post(gw, {"model": "mock", "prompt": text})
    responses = post(gw, {"model": "mock", "input": text}, path="/v1/responses")
    chat = post(gw, {"model": "mock", "prompt": text, "messages": [{"role": "user", "content": text}]},
                path="/v1/chat/completions")
    keys = {r.headers["x-litellm-cache-key"] for r in (completion, responses, chat)}
    assert len(keys) == 3
    assert completion.json()["object"] == "text_completion" and completion.json()["choices"][0]["text"] == "mocked!"


async def _many(url: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20,
                                 limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(PATH, json=body) for _ in range(n)))


@pytest.mark.parametrize("stream", [False, True])
def test_identical_concurrent_requests_call_the_provider_once(gw: GatewayProcess, standin: OpenAIApisStandIn,
                                                              stream: bool) -> None:
    body = {"model": "slow-model", "prompt": unique(), "stream": stream}
    answers = asyncio.run(_many(gw.url, body, 8))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert standin.calls("/v1/completions", body["prompt"]) == 1


def test_errors_and_cut_streams_are_not_stored(sdk: openai.OpenAI, gw: GatewayProcess,
                                               standin: OpenAIApisStandIn) -> None:
    failing = {"model": "fail-model", "prompt": unique()}
    assert [post(gw, failing).status_code for _ in range(2)] == [500, 500]
    assert standin.calls("/v1/completions", failing["prompt"]) == 2
    cut = {"model": "cut-model", "prompt": unique(), "stream": True}
    for _ in range(2):
        answer = post(gw, cut)
        assert answer.headers["x-reprise-cache"] == "miss"
        assert b"[DONE]" not in answer.content and b"stream_broken" in answer.content
    assert standin.calls("/v1/completions", cut["prompt"]) == 2
    with pytest.raises(openai.APIError):
        list(sdk.completions.create(model="cut-model", prompt=unique(), stream=True))


def test_a_plain_answer_carrying_an_error_is_a_502_never_stored(gw: GatewayProcess,
                                                                standin: OpenAIApisStandIn) -> None:
    """HTTP 200 with ``error`` beside a finished choice is the provider's failure, as an ``error``
    event in a stream is (found: it was stored and replayed as a hit)."""
    body = {"model": "error-field-model", "prompt": unique()}
    for call in (1, 2):
        answer = post(gw, body)
        assert answer.status_code == 502, answer.text
        assert answer.headers["x-reprise-cache"] == "miss"
        assert answer.json()["error"]["type"] == "upstream_error"
        assert standin.calls("/v1/completions", body["prompt"]) == call


def test_cache_controls_are_honoured(gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    body = {"model": "gpt-4.1", "prompt": unique()}
    assert post(gw, {**body, "cache": {"no-store": True}}).headers["x-reprise-cache"] == "miss"
    assert post(gw, body).headers["x-reprise-cache"] == "miss"
    assert post(gw, body).headers["x-reprise-cache"] == "hit"
    assert post(gw, body, **{"Cache-Control": "no-cache"}).headers["x-reprise-cache"] == "bypass"
    assert post(gw, {**body, "cache": {"use-cache": False}}).headers["x-reprise-cache"] == "bypass"
    assert standin.calls("/v1/completions", body["prompt"]) == 4


def test_malformed_bodies_are_400(gw: GatewayProcess) -> None:
    for body in ({"prompt": "x"}, {"model": "gpt-4.1"}, {"model": "gpt-4.1", "prompt": 3},
                 {"model": "gpt-4.1", "prompt": "x", "n": 0}, {"model": "gpt-4.1", "prompt": "x", "stream": 1}):
        assert post(gw, body).status_code == 400, body
    assert post(gw, {"model": "azure-gpt", "prompt": "hi"}).status_code == 400


def test_a_stream_that_ends_cleanly_without_done_ends_with_an_error(
        sdk: openai.OpenAI, gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    # A well-formed HTTP end, but no finish_reason and no [DONE]: the answer was cut.
    body = {"model": "short-model", "prompt": unique(), "stream": True}
    answer = post(gw, body)
    assert answer.headers["x-reprise-cache"] == "miss"
    assert b"[DONE]" not in answer.content and b"stream_broken" in answer.content
    with pytest.raises(openai.APIError):
        list(sdk.completions.create(model="short-model", prompt=body["prompt"], stream=True))
    assert standin.calls("/v1/completions", body["prompt"]) == 2
