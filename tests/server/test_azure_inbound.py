"""The Azure-style inbound routes (issue 14 item 2): the official ``openai.AzureOpenAI``
client, pointed at Reprise as at an Azure resource, authenticating with ``api-key``;
the deployment in the path names the model. Chat plain, streamed and replayed,
embeddings; cached with the same keys as ``/v1/chat/completions``."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.server.conftest import AUTH, MASTER_KEY, GatewayProcess, chat, unique
from tests.support.stub_upstream import StubUpstream


@pytest.fixture()
def azure_sdk(gateway: GatewayProcess) -> Iterator[openai.AzureOpenAI]:
    with openai.AzureOpenAI(azure_endpoint=gateway.url, api_key=MASTER_KEY, api_version="2024-10-21",
                            max_retries=0) as client:
        yield client


def test_azure_client_chat_miss_hit_and_stream_replay(azure_sdk: openai.AzureOpenAI, upstream: StubUpstream) -> None:
    messages = [{"role": "user", "content": unique()}]
    first = azure_sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    second = azure_sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert (first.headers["x-reprise-cache"], second.headers["x-reprise-cache"]) == ("miss", "hit")
    text = first.parse().choices[0].message.content
    stream = azure_sdk.chat.completions.create(model="gpt-4o", messages=messages, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text
    assert upstream.calls()["chat"] == 1


def test_azure_route_shares_entries_with_the_openai_route(gateway: GatewayProcess, azure_sdk: openai.AzureOpenAI,
                                                          upstream: StubUpstream) -> None:
    prompt = unique()
    openai_form = httpx.post(gateway.url + "/v1/chat/completions", json=chat(prompt), headers=AUTH)
    azure_form = azure_sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}])
    assert azure_form.headers["x-reprise-cache"] == "hit"
    assert azure_form.headers["x-litellm-cache-key"] == openai_form.headers["x-litellm-cache-key"]


def test_azure_client_embeddings(azure_sdk: openai.AzureOpenAI, upstream: StubUpstream) -> None:
    words = [unique("a"), unique("b")]
    first = azure_sdk.embeddings.create(model="text-embedding-3-small", input=words)
    second = azure_sdk.embeddings.create(model="text-embedding-3-small", input=words)
    assert [d.embedding for d in first.data] == [d.embedding for d in second.data]
    assert upstream.calls()["embeddings"] == 1


def test_unknown_azure_operation_or_deployment(gateway: GatewayProcess) -> None:
    headers = {"api-key": MASTER_KEY}
    other = httpx.post(gateway.url + "/openai/deployments/gpt-4o/images/generations?api-version=x",
                       json={}, headers=headers)
    assert other.status_code == 404
    absent = httpx.post(gateway.url + "/openai/deployments/nope/chat/completions?api-version=x",
                        json=chat(unique(), model="ignored"), headers=headers)
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "model_not_found"
    no_key = httpx.post(gateway.url + "/openai/deployments/gpt-4o/chat/completions", json=chat(unique()))
    assert no_key.status_code == 401
