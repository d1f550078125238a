"""``POST /v1/responses`` through ``reprise serve`` against a stand-in that speaks only OpenAI's
Responses API (tests/support/openai_apis_standin.py), with the official ``openai`` SDK as client:
plain and streamed answers cached verbatim, single-flight, ``previous_response_id``,
``background`` and ``conversation`` bypassed, failures and cut streams never stored, cache controls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from tests.server.conftest import AUTH, GatewayProcess, unique
from tests.server.openai_apis_fixtures import openai_apis_fixtures
from tests.support.openai_apis_standin import OpenAIApisStandIn

PATH = "/v1/responses"


standin, gw, sdk = openai_apis_fixtures("responses")


def post(gw: GatewayProcess, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gw.url + PATH, json=body, headers={**AUTH, **headers}, timeout=10)


def test_plain_miss_then_hit_is_the_providers_json(sdk: openai.OpenAI, gw: GatewayProcess,
                                                   standin: OpenAIApisStandIn) -> None:
    text = unique()
    first = sdk.responses.with_raw_response.create(model="gpt-4.1", input=text, temperature=0.5)
    second = sdk.responses.with_raw_response.create(model="gpt-4.1", input=text, temperature=0.5)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert first.headers["x-litellm-cache-key"] == second.headers["x-litellm-cache-key"]
    assert second.content == first.content  # byte for byte
    assert second.parse().output_text == first.parse().output_text
    assert standin.calls("/v1/responses", text) == 1
    sent = next(r["body"] for r in standin.requests if text in str(r["body"]))
    assert sent["model"] == "gpt-4.1" and "cache" not in sent
    assert standin.rejected == []


def test_streamed_miss_then_hit_replays_the_same_events(sdk: openai.OpenAI, gw: GatewayProcess,
                                                        standin: OpenAIApisStandIn) -> None:
    body = {"model": "gpt-4.1", "input": unique(), "stream": True}
    first, second = post(gw, body), post(gw, body)
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    assert first.headers["content-type"].startswith("text/event-stream")
    assert second.content == first.content
    assert first.content.startswith(b"event: response.created\n")
    assert b"event: response.completed\n" in first.content
    assert standin.calls("/v1/responses", body["input"]) == 1
    # the SDK parses the replayed stream: typed events in order, response.completed last
    events = list(sdk.responses.create(model="gpt-4.1", input=body["input"], stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text
    assert standin.calls("/v1/responses", body["input"]) == 1


def test_plain_and_streamed_are_separate_entries(gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    text = unique()
    plain = post(gw, {"model": "gpt-4.1", "input": text})
    streamed = post(gw, {"model": "gpt-4.1", "input": text, "stream": True})
    assert (plain.headers["x-reprise-cache"], streamed.headers["x-reprise-cache"]) == ("miss", "miss")
    assert plain.headers["x-litellm-cache-key"] != streamed.headers["x-litellm-cache-key"]


async def _many(url: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=20,
                                 limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(PATH, json=body) for _ in range(n)))


@pytest.mark.parametrize("stream", [False, True])
def test_identical_concurrent_requests_call_the_provider_once(gw: GatewayProcess, standin: OpenAIApisStandIn,
                                                              stream: bool) -> None:
    body = {"model": "slow-model", "input": unique(), "stream": stream}
    answers = asyncio.run(_many(gw.url, body, 8))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert standin.calls("/v1/responses", body["input"]) == 1


def test_previous_response_id_is_cached_keyed_by_the_id(sdk: openai.OpenAI, standin: OpenAIApisStandIn) -> None:
    first = sdk.responses.create(model="gpt-4.1", input=unique())
    follow_up = unique("and then?")
    a = sdk.responses.with_raw_response.create(model="gpt-4.1", input=follow_up, previous_response_id=first.id)
    b = sdk.responses.with_raw_response.create(model="gpt-4.1", input=follow_up, previous_response_id=first.id)
    assert (a.headers["x-reprise-cache"], b.headers["x-reprise-cache"]) == ("miss", "hit")
    assert b.content == a.content
    # the id a hit returns is the one the provider stored on the miss: it can be continued
    chained = sdk.responses.create(model="gpt-4.1", input=unique(), previous_response_id=b.parse().id)
    assert chained.previous_response_id == b.parse().id
    # another id is another question
    other = sdk.responses.create(model="gpt-4.1", input=unique())
    c = sdk.responses.with_raw_response.create(model="gpt-4.1", input=follow_up, previous_response_id=other.id)
    assert c.headers["x-reprise-cache"] == "miss"
    assert standin.calls("/v1/responses", follow_up) == 2


def test_background_and_conversation_are_bypassed(gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    body = {"model": "gpt-4.1", "input": unique(), "background": True}
    first, second = post(gw, body), post(gw, body)
    assert first.json()["status"] == "queued"
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("bypass", "bypass")
    assert "x-litellm-cache-key" not in first.headers
    conversation = {"model": "gpt-4.1", "input": unique(), "conversation": "conv_123"}
    assert [post(gw, conversation).headers["x-reprise-cache"] for _ in range(2)] == ["bypass", "bypass"]
    assert standin.calls("/v1/responses", body["input"]) == 2
    assert standin.calls("/v1/responses", conversation["input"]) == 2


def test_provider_errors_and_incomplete_answers_are_not_stored(gw: GatewayProcess,
                                                               standin: OpenAIApisStandIn) -> None:
    failing = {"model": "fail-model", "input": unique()}
    assert [post(gw, failing).status_code for _ in range(2)] == [500, 500]
    assert standin.calls("/v1/responses", failing["input"]) == 2
    incomplete = {"model": "incomplete-model", "input": unique()}
    answers = [post(gw, incomplete) for _ in range(2)]
    assert [a.json()["status"] for a in answers] == ["incomplete", "incomplete"]
    assert [a.headers["x-reprise-cache"] for a in answers] == ["miss", "miss"]
    assert standin.calls("/v1/responses", incomplete["input"]) == 2


@pytest.mark.parametrize("model", ["cut-model", "failed-model", "incomplete-model"])
def test_streams_that_do_not_complete_are_not_stored(gw: GatewayProcess, standin: OpenAIApisStandIn,
                                                     model: str) -> None:
    body = {"model": model, "input": unique(), "stream": True}
    for _ in range(2):
        answer = post(gw, body)
        assert answer.headers["x-reprise-cache"] == "miss"
        assert b"response.completed" not in answer.content
    assert standin.calls("/v1/responses", body["input"]) == 2


def test_a_cut_stream_ends_with_an_error_the_sdk_raises(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError):
        list(sdk.responses.create(model="cut-model", input=unique(), stream=True))


def test_cache_controls_are_honoured(gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    body = {"model": "gpt-4.1", "input": unique()}
    assert post(gw, {**body, "cache": {"no-store": True}}).headers["x-reprise-cache"] == "miss"
    assert post(gw, body).headers["x-reprise-cache"] == "miss"  # the no-store answer was not kept
    assert post(gw, body).headers["x-reprise-cache"] == "hit"
    fresh = post(gw, body, **{"Cache-Control": "no-cache"})
    assert fresh.headers["x-reprise-cache"] == "bypass"
    assert post(gw, body).content == fresh.content  # no-cache stored its fresh answer
    spaced = post(gw, {**body, "cache": {"namespace": "team-a"}})
    assert spaced.headers["x-litellm-cache-key"].startswith("team-a:")
    assert spaced.headers["x-reprise-cache"] == "miss"
    assert standin.calls("/v1/responses", body["input"]) == 4
    assert post(gw, {**body, "cache": {"bogus": 1}}).status_code == 400


def test_mock_and_non_openai_deployments(sdk: openai.OpenAI, gw: GatewayProcess) -> None:
    text = unique()
    a = sdk.responses.with_raw_response.create(model="mock", input=text)
    b = sdk.responses.with_raw_response.create(model="mock", input=text)
    assert a.parse().output_text == "mocked!"
    assert (a.headers["x-reprise-cache"], b.headers["x-reprise-cache"]) == ("miss", "hit")
    events = list(sdk.responses.create(model="mock", input=unique(), stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "mocked!"
    refused = post(gw, {"model": "azure-gpt", "input": "hi"})
    assert refused.status_code == 400
    assert "azure-gpt" in refused.json()["error"]["message"]


def test_malformed_bodies_are_400(gw: GatewayProcess) -> None:
    for body in ({"input": "x"}, {"model": "gpt-4.1", "stream": "yes"}, {"model": "gpt-4.1", "input": 3},
                 {"model": "gpt-4.1", "background": 1}):
        assert post(gw, body).status_code == 400, body


def test_a_stream_that_ends_cleanly_before_its_last_event_ends_with_an_error(
        sdk: openai.OpenAI, gw: GatewayProcess, standin: OpenAIApisStandIn) -> None:
    # The provider's HTTP response ends well formed, but no response.completed (nor failed,
    # incomplete or error) came: the client must be told the answer was cut, not left to
    # take a partial answer for a whole one.
    body = {"model": "short-model", "input": unique(), "stream": True}
    answer = post(gw, body)
    assert answer.headers["x-reprise-cache"] == "miss"
    assert answer.content.endswith(b"\n\n") and b"event: error\ndata: " in answer.content
    assert b"stream_broken" in answer.content
    with pytest.raises(openai.APIError):
        list(sdk.responses.create(model="short-model", input=body["input"], stream=True))
    assert standin.calls("/v1/responses", body["input"]) == 2


@pytest.mark.parametrize(("model", "last"), [("slow-incomplete-model", b"response.incomplete"),
                                             ("slow-failed-model", b"response.failed")])
def test_requests_waiting_for_a_whole_unstored_stream_get_its_events(
        gw: GatewayProcess, standin: OpenAIApisStandIn, model: str, last: bytes) -> None:
    # An incomplete or failed response is the provider's whole answer: sent to every request
    # that waited for it (as a plain incomplete answer is), only never stored.
    body = {"model": model, "input": unique(), "stream": True}
    answers = asyncio.run(_many(gw.url, body, 4))
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    assert b"event: " + last + b"\n" in answers[0].content
    assert {a.headers["x-reprise-cache"] for a in answers} == {"miss"}
    assert standin.calls("/v1/responses", body["input"]) == 1
    assert post(gw, body).headers["x-reprise-cache"] == "miss"  # still never stored
