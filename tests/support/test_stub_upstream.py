"""The stub upstream must look like OpenAI to a real client, or every gateway test lies.

These start the real subprocess once per module and talk to it over HTTP.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stub_upstream import (
    FUNCTION_CALL,
    RECORDED_REQUESTS,
    STOP_REASON,
    X_EXTRA,
    X_VENDOR,
    StubUpstream,
    embedding_vector,
)


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as server:
        yield server


@pytest.fixture
def client(stub: StubUpstream) -> Iterator[httpx.Client]:
    stub.reset()
    stub.set_delay(0)
    with httpx.Client(base_url=stub.url, timeout=10) as c:
        yield c


def chat_body(text: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": "stub-model", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[len("data: ") :] for line in response.text.split("\n\n") if line.startswith("data: ")]


def test_url_and_port(stub: StubUpstream) -> None:
    assert stub.port > 0
    assert stub.url == f"http://127.0.0.1:{stub.port}/v1"


def test_chat_answer_is_deterministic_but_unique_per_call(client: httpx.Client, stub: StubUpstream) -> None:
    first = client.post("/chat/completions", json=chat_body()).json()
    second = client.post("/chat/completions", json=chat_body()).json()
    assert first["object"] == "chat.completion"
    assert first["id"] == "chatcmpl-1"
    assert first["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: hello world #1",
        "refusal": None,
    }
    assert first["choices"][0]["finish_reason"] == "stop"
    assert first["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert second["choices"][0]["message"]["content"] == "echo: hello world #2"
    assert stub.calls()["chat"] == 2
    assert stub.calls()["by_model"] == {"stub-model": 2}


def test_path_without_v1_and_n_choices(client: httpx.Client, stub: StubUpstream) -> None:
    body = httpx.post(f"{stub.base_url}/chat/completions", json=chat_body(n=3)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) == 3


def test_stream_reassembles_to_the_same_content_with_usage(client: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = client.post("/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == "echo: hello world #1"
    assert len(chunks) > 4  # word by word
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 6


def test_tool_call_streamed_in_pieces(client: httpx.Client) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    plain = client.post("/chat/completions", json=chat_body("please call tool", tools=tools)).json()
    message = plain["choices"][0]["message"]
    assert plain["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"]["name"] == "lookup"

    streamed = client.post("/chat/completions", json=chat_body("please call tool", tools=tools, stream=True))
    chunks = [json.loads(e) for e in sse_events(streamed)[:-1]]
    pieces = [
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(pieces) > 2
    assert json.loads("".join(pieces)) == {"query": "please call tool", "call": 2}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_embeddings_inputs_and_item_counter(client: httpx.Client, stub: StubUpstream) -> None:
    one = client.post("/embeddings", json={"model": "e", "input": "a"}).json()
    assert one["data"][0]["embedding"] == embedding_vector("a")
    assert len(one["data"][0]["embedding"]) == 8
    many = client.post("/embeddings", json={"model": "e", "input": ["a", "b", "c"]}).json()
    assert [d["index"] for d in many["data"]] == [0, 1, 2]
    assert many["data"][0]["embedding"] == one["data"][0]["embedding"]
    tokens = client.post("/embeddings", json={"model": "e", "input": [1, 2, 3]}).json()
    assert len(tokens["data"]) == 1
    batches = client.post("/embeddings", json={"model": "e", "input": [[1, 2], [3]]}).json()
    assert len(batches["data"]) == 2
    assert client.post("/embeddings", json={"model": "e", "input": []}).status_code == 400
    stats = stub.calls()
    assert (stats["embeddings"], stats["embedding_items"]) == (5, 7)


def test_embeddings_base64_is_float32_little_endian(client: httpx.Client) -> None:
    body = client.post("/embeddings", json={"model": "e", "input": ["x"], "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert list(struct.unpack("<8f", raw)) == embedding_vector("x")


@pytest.mark.parametrize("status", [500, 429, 400])
def test_fail_models_return_openai_errors_and_are_counted(
    client: httpx.Client, stub: StubUpstream, status: int
) -> None:
    response = client.post("/chat/completions", json={**chat_body(), "model": f"stub-fail-{status}"})
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert stub.calls()["chat"] == 1


def test_cut_stream_breaks_the_connection(client: httpx.Client) -> None:
    body = {**chat_body(stream=True), "model": "cut-stream"}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=body)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json={**body, "stream": False})


def test_bad_sse_and_no_done(client: httpx.Client) -> None:
    bad = sse_events(client.post("/chat/completions", json={**chat_body(stream=True), "model": "bad-sse"}))
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad[1])
    no_done = sse_events(client.post("/chat/completions", json={**chat_body(stream=True), "model": "no-done"}))
    assert no_done[-1] != "[DONE]"
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in no_done)


def test_delay_default_and_header_override(client: httpx.Client, stub: StubUpstream) -> None:
    stub.set_delay(200)
    started = time.perf_counter()
    client.post("/chat/completions", json=chat_body())
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    client.post("/chat/completions", json=chat_body(), headers={"x-stub-delay-ms": "0"})
    assert time.perf_counter() - started < 0.2


def test_slow_model_times_out_a_short_client(client: httpx.Client) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json={**chat_body(), "model": "slow"}, timeout=0.2)


def test_reset_last_request_and_models(client: httpx.Client, stub: StubUpstream) -> None:
    client.post("/chat/completions", json=chat_body(), headers={"Authorization": "Bearer sk-x"})
    last = stub.last_request()
    assert last is not None
    assert last["body"] == chat_body() and last["headers"]["Authorization"] == "Bearer sk-x"
    assert client.get("/models").json()["object"] == "list"
    assert stub.requests()
    stub.reset()
    assert stub.requests() == [] and stub.last_request() is None
    assert stub.calls() == {
        "chat": 0,
        "embeddings": 0,
        "embedding_items": 0,
        "models": 0,
        "by_model": {},
        "delay_ms": 0.0,
    }


def test_openai_sdk_understands_it(stub: StubUpstream) -> None:
    import openai
    with openai.OpenAI(base_url=stub.url, api_key="sk-x") as sdk:
        reply = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content is not None
        assert reply.choices[0].message.content.startswith("echo: hi #")
        stream = sdk.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.startswith("echo: hi there #")
        assert chunks[-1].usage is not None
        vectors = sdk.embeddings.create(model="e", input=["a", "b"])  # the SDK asks for base64
        assert [round(x, 5) for x in vectors.data[0].embedding] == [round(x, 5) for x in embedding_vector("a")]


# --------------------------------------------------------------------------- answer shapes (MODE_MODELS)


def stream_chunks(client: httpx.Client, body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    response = client.post("/chat/completions", json={**body, "stream": True}, **kwargs)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_reasoning_plain_answer_has_unknown_fields_at_every_level(client: httpx.Client) -> None:
    answer = client.post("/chat/completions", json=chat_body(model="ds-reasoning")).json()
    assert answer["x_vendor"] == X_VENDOR
    choice = answer["choices"][0]
    assert choice["stop_reason"] == STOP_REASON and choice["finish_reason"] == "stop"
    message = choice["message"]
    assert message["content"] == "echo: hello world #1"
    assert message["reasoning_content"].startswith("The user wants an echo. Call 1 ")
    assert message["x_extra"] == X_EXTRA
    details = answer["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] == len(message["reasoning_content"].split())
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"]


def test_reasoning_stream_sends_reasoning_deltas_first_deepseek_style(client: httpx.Client) -> None:
    body = chat_body(model="ds-reasoning", stream_options={"include_usage": True})
    chunks = stream_chunks(client, body)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = [i for i, d in enumerate(deltas) if d.get("reasoning_content")]
    content = [i for i, d in enumerate(deltas) if d.get("content")]
    assert len(reasoning) >= 3 and len(content) >= 3 and max(reasoning) < min(content)
    assert "".join(deltas[i]["reasoning_content"] for i in reasoning).startswith("The user wants an echo. Call 1 ")
    assert "".join(d.get("content") or "" for d in deltas) == "echo: hello world #1"
    pieces = [d["x_extra"] for d in deltas if "x_extra" in d]
    assert len(pieces) > 1 and "".join(pieces) == X_EXTRA
    assert all(c["x_vendor"] == X_VENDOR for c in chunks)
    finishing = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(f["finish_reason"], f["stop_reason"]) for f in finishing] == [("stop", STOP_REASON)]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert all(c["choices"] for c in stream_chunks(client, chat_body(model="ds-reasoning")))  # no usage unasked


def test_function_call_plain_and_streamed(client: httpx.Client) -> None:
    plain = client.post("/chat/completions", json=chat_body(model="fn-function-call")).json()
    assert plain["choices"][0]["message"] == {"role": "assistant", "content": None, "function_call": FUNCTION_CALL}
    assert plain["choices"][0]["finish_reason"] == "function_call"
    assert json.loads(FUNCTION_CALL["arguments"]) == {"city": "Paris"}

    deltas = [c["choices"][0]["delta"] for c in stream_chunks(client, chat_body(model="fn-function-call"))]
    assert deltas[0]["function_call"] == {"name": "get_weather", "arguments": ""}
    pieces = [d["function_call"]["arguments"] for d in deltas[1:] if "function_call" in d]
    assert len(pieces) > 2 and "".join(pieces) == FUNCTION_CALL["arguments"]
    assert all("name" not in d.get("function_call", {}) for d in deltas[1:])
    assert deltas[-1] == {}


def test_reject_stream_options_refuses_only_that_field(client: httpx.Client, stub: StubUpstream) -> None:
    model = "x-reject-stream-options"
    refused = client.post("/chat/completions", json=chat_body(model=model, stream=True,
                                                             stream_options={"include_usage": True}))
    assert refused.status_code == 400
    assert "stream_options" in refused.json()["error"]["message"]
    assert stream_chunks(client, chat_body(model=model))[0]["choices"][0]["delta"]["role"] == "assistant"
    assert client.post("/chat/completions", json=chat_body(model=model)).status_code == 200
    assert stub.calls_for(model) == 3


def test_invalid_json_is_a_200_that_is_not_json(client: httpx.Client, stub: StubUpstream) -> None:
    plain = client.post("/chat/completions", json=chat_body(model="invalid-json"))
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.text)
    streamed = client.post("/chat/completions", json=chat_body(model="invalid-json", stream=True))
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/html")
    assert streamed.text == "<html>oops</html>"
    embedded = client.post("/embeddings", json={"model": "invalid-json", "input": "a"})
    assert embedded.status_code == 200 and embedded.text == "<html>oops</html>"
    assert stub.calls_for("invalid-json") == 3


def test_stall_holds_the_request_and_counts_it(client: httpx.Client, stub: StubUpstream) -> None:
    with pytest.raises(httpx.ReadTimeout):
        client.post("/chat/completions", json=chat_body(model="stall"), timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        client.post("/embeddings", json={"model": "emb-stall", "input": "a"}, timeout=0.3)
    assert stub.calls()["by_model"] == {"stall": 1, "emb-stall": 1}


def test_slow_stream_pauses_between_chunks_only(client: httpx.Client) -> None:
    body = chat_body("one two three", model="slow-stream")
    assert client.post("/chat/completions", json=body, timeout=4).status_code == 200  # not the 5 s "slow" fault
    started = time.perf_counter()
    chunks = stream_chunks(client, body, headers={"x-stub-chunk-delay-ms": "50"})
    assert time.perf_counter() - started >= 0.05 * (len(chunks) - 1)  # a lower bound: never flaky
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "echo: one two three #2"
    with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
        first = next(response.iter_lines())  # a client may hang up after the first chunk
    assert first.startswith("data: {")


def test_requests_are_recorded_with_streamed_and_embedding_calls_counted(
    client: httpx.Client, stub: StubUpstream
) -> None:
    client.post("/chat/completions", json=chat_body(model="a"), headers={"x-trace": "1"})
    client.post("/chat/completions", json=chat_body(model="a", stream=True))
    client.post("/embeddings", json={"model": "e", "input": ["x", "y"]})
    client.post("/chat/completions", content=b"not json")
    seen = stub.requests()
    assert [r["path"] for r in seen] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/embeddings",
                                         "/v1/chat/completions"]
    assert seen[0]["headers"]["x-trace"] == "1" and seen[1]["body"]["stream"] is True
    assert seen[2]["body"] == {"model": "e", "input": ["x", "y"]} and seen[3]["body"] is None
    assert [r["body"]["model"] for r in stub.requests(model="a")] == ["a", "a"]
    assert len(stub.requests(path="/embeddings")) == 1
    assert stub.calls()["by_model"] == {"a": 2, "e": 1}
    for i in range(RECORDED_REQUESTS + 5):
        client.post("/embeddings", json={"model": "e", "input": str(i)})
    seen = stub.requests()
    assert len(seen) == RECORDED_REQUESTS and seen[-1]["body"]["input"] == str(RECORDED_REQUESTS + 4)


def test_openai_sdk_reads_reasoning_and_function_call(stub: StubUpstream) -> None:
    import openai
    with openai.OpenAI(base_url=stub.url, api_key="sk-x") as sdk:
        chunks = list(sdk.chat.completions.create(model="ds-reasoning", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}]))
        thought = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
        assert thought.startswith("The user wants an echo.")
        assert chunks[0].model_extra == {"x_vendor": X_VENDOR}
        reply = sdk.chat.completions.create(model="fn-function-call", messages=[{"role": "user", "content": "hi"}])
        call = reply.choices[0].message.function_call
        assert call is not None and (call.name, call.arguments) == (FUNCTION_CALL["name"], FUNCTION_CALL["arguments"])
