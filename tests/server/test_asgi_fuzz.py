"""Hostile input straight into the ASGI app, in-process: random bodies, headers and chunkings.

Whatever arrives, the app answers exactly once, with a status below 500 (502 only for
the model whose provider is unreachable on purpose), an OpenAI error JSON for every
error, and response headers that never carry CR/LF or a raw piece of the input.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reprise.config.loader import parse_config
from reprise.server.app import RepriseApp
from tests.server.conftest import free_port

MASTER = "sk-fuzz-master-key-0"
PATHS = ["/chat/completions", "/v1/chat/completions", "/embeddings", "/v1/embeddings", "/models",
         "/v1/models", "/health", "/readyz", "/livez", "/key/generate", "/key/delete", "/key/list",
         "/openapi.json", "/nowhere", "/chat/completions/", "//chat/completions"]
#: models the fuzzer may name: answered in-process, refused by a closed port (502), or unknown (404)
MODELS = ["mock", "down", "nope", ""]
FIELD_NAMES = ["model", "messages", "input", "stream", "n", "temperature", "cache", "stop", "tools",
               "stream_options", "encoding_format", "dimensions", "tenant", "keys", "key_sha256", "role"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False,
                      allow_infinity=False), st.text(max_size=20), st.sampled_from(MODELS))
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)
cache_object = st.dictionaries(
    st.sampled_from(["ttl", "s-maxage", "no-cache", "no_store", "namespace", "use-cache", "bogus"]),
    json_leaf | st.text(alphabet="a-\r\n/é:\x00", max_size=10),
    max_size=3,
)
message = st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]) | json_leaf}, optional=
                                {"content": json_value})
chat_body = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS) | json_leaf},
    optional={"messages": st.lists(message, max_size=3) | json_value, "stream": st.booleans() | json_leaf,
     "n": st.integers(-3, 300) | json_leaf, "cache": cache_object | json_leaf, "temperature": json_leaf,
     "stream_options": st.just({"include_usage": True}) | json_value},
)
embed_body = st.fixed_dictionaries(
    {"model": st.sampled_from(MODELS)},
    optional={"input": json_value, "encoding_format": json_leaf, "dimensions": json_leaf, "cache": cache_object},
)
valid_controls = st.fixed_dictionaries({}, optional={
    "ttl": st.floats(0.001, 1e6), "s-maxage": st.integers(0, 100), "no-cache": st.booleans(),
    "no-store": st.booleans(), "namespace": st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True),
    "use-cache": st.booleans()})
valid_chat = st.fixed_dictionaries(
    {"model": st.sampled_from(["mock", "mock", "down"]),
     "messages": st.lists(st.fixed_dictionaries({"role": st.just("user"), "content": st.text(max_size=30)}),
                          min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "cache": valid_controls, "n": st.integers(1, 3),
              "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
              "temperature": st.floats(0, 2), "extra": json_value},
)
valid_embed = st.fixed_dictionaries(
    {"model": st.sampled_from(["mock", "mock", "down"]),
     "input": st.text(max_size=20) | st.lists(st.text(max_size=10), min_size=1, max_size=4)
     | st.lists(st.integers(0, 2**31), min_size=1, max_size=4)},
    optional={"cache": valid_controls, "encoding_format": st.sampled_from(["float", "base64"])},
)
raw_body = st.one_of(
    valid_chat.map(orjson.dumps), valid_embed.map(orjson.dumps), chat_body.map(orjson.dumps),
    embed_body.map(orjson.dumps), json_value.map(orjson.dumps), st.binary(max_size=200),
)
header_value = st.one_of(st.binary(max_size=40), st.sampled_from([
    b"no-cache", b"max-age=\xb2", b"max-age=99999999999999999999", b"s-maxage=-1", b"no-store, max-age=5",
]))
extra_headers = st.lists(st.tuples(
    st.sampled_from([b"cache-control", b"content-length", b"content-type", b"x-request-id", b"authorization",
                     b"transfer-encoding", b"x-stub-delay-ms"]),
    header_value,
), max_size=4)
auth = st.sampled_from([f"Bearer {MASTER}".encode()] * 6
                       + [b"Bearer wrong", b"", b"Basic abc", b"bearer " + MASTER.encode()])


def config(down_port: int) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": "mock", "litellm_params": {"model": "openai/mock", "mock_response": "hi"}},
            {"model_name": "down", "litellm_params": {"model": "openai/down", "api_key": "sk-up",
                                                      "api_base": f"http://127.0.0.1:{down_port}/v1",
                                                      "timeout": 2}},
        ],
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 0.05},
        "litellm_settings": {"cache": True, "cache_params": {"type": "local", "max_entries": 200}},
    }


@pytest.fixture()
async def app() -> AsyncIterator[RepriseApp]:
    gateway_app = RepriseApp(parse_config(config(free_port()), environ={}))
    yield gateway_app
    await gateway_app.gateway.aclose()


async def run_request(app: RepriseApp, method: str, path: str, headers: list[tuple[bytes, bytes]],
                      chunks: list[bytes]) -> list[dict[str, Any]]:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    incoming = iter(messages)
    sent: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        message = next(incoming, None)
        if message is not None:
            return message
        await finished.wait()  # the client stays connected until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            finished.set()

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b"",
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2), "scheme": "http", "http_version": "1.1"}
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:], strict=False)] or [b""]


def check_answer(sent: list[dict[str, Any]], body: bytes) -> None:
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    status = starts[0]["status"]
    model = _model_of(body)
    assert status < 500 or (status == 502 and model == "down"), (status, sent)
    headers = starts[0]["headers"]
    for name, value in headers:
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value, (name, value)
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status >= 400:
        error = orjson.loads(content)["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert {"type", "param", "code"} <= set(error)
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")


def _model_of(body: bytes) -> Any:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed.get("model") if isinstance(parsed, dict) else None


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE"]),
       path=st.sampled_from(PATHS[:4] * 6 + PATHS), body=raw_body,
       cuts=st.lists(st.integers(0, 10**6), max_size=3), authorization=auth, headers=extra_headers)
async def test_any_request_gets_one_well_formed_answer(app: RepriseApp, method: str, path: str, body: bytes,
                                                      cuts: list[int], authorization: bytes,
                                                      headers: list[tuple[bytes, bytes]]) -> None:
    all_headers = [(b"authorization", authorization), *headers]
    sent = await run_request(app, method, path, all_headers, split(body, cuts))
    check_answer(sent, body)


async def test_a_body_too_deep_for_the_parser_is_a_400(app: RepriseApp) -> None:
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}"), (b'{"model":"mock","messages":[', b"]}")):
        body = opener * 1_500 + closer * 1_500  # the HTTP tests send 100k levels
        sent = await run_request(app, "POST", "/chat/completions",
                                 [(b"authorization", f"Bearer {MASTER}".encode())], [body])
        assert sent[0]["status"] == 400  # and the process is still alive: orjson 3.8 segfaulted here
        assert orjson.loads(sent[1]["body"])["error"]["type"] == "invalid_request_error"


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming(app: RepriseApp) -> None:
    limit = app.gateway.max_body_bytes
    received = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal received
        while True:
            received += 4096
            yield b" " * 4096

    sent: list[dict[str, Any]] = []
    source = chunks()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": await anext(source), "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/chat/completions", "query_string": b"",
             "headers": [(b"authorization", f"Bearer {MASTER}".encode())]}
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert sent[0]["status"] == 413
    assert received <= limit + 4096  # stopped reading right after the limit: memory stays bounded


async def test_a_body_over_the_limit_in_one_message_is_413(app: RepriseApp) -> None:
    """Found by the chunked-upload test: a body that arrived whole in the first ASGI message
    (no Content-Length) skipped the size check."""
    body = b" " * (app.gateway.max_body_bytes + 1)
    sent = await run_request(app, "POST", "/chat/completions", [(b"authorization", f"Bearer {MASTER}".encode())],
                             [body])
    assert sent[0]["status"] == 413
