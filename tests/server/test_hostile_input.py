"""Hostile input through a real ``reprise serve``: bounded memory, no header injection, no 500.

Regression tests for bugs the fuzzers found are at the end.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import orjson
import pytest

from reprise.core.controls import parse_controls
from reprise.errors import RequestError
from tests.server.conftest import AUTH, GatewayProcess, chat, gateway_config, unique
from tests.support.stub_upstream import StubUpstream

POST_HEAD = "POST /chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-test-master-key\r\n"


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes on a fresh socket; read the answer until the server closes or says it all."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: fine
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
        return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


@pytest.mark.parametrize(("opener", "closer"), [(b"[", b"]"), (b'{"a":', b"}")])
def test_a_100k_deep_body_is_a_400(client: httpx.Client, opener: bytes, closer: bytes) -> None:
    body = opener * 100_000 + b"1" + closer * 100_000
    r = client.post("/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("depth", "status"), [(200, 200), (250, 200), (300, 400), (1_000, 400), (100_000, 400)])
@pytest.mark.parametrize("model", ["mock", "gpt-4o"])
def test_deep_nesting_inside_a_valid_request(client: httpx.Client, depth: int, status: int, model: str) -> None:
    """Found while fuzzing: orjson reads any depth but writes only 255 levels, so a deep ``content``
    was parsed, then failed in the key hash or the provider call: a 500 (now a 400)."""
    content = b"[" * depth + b"]" * depth
    body = b'{"model":"%s","messages":[{"role":"user","content":%s}],"x":"%s"}' % (
        model.encode(), content, unique().encode())
    r = client.post("/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    if status == 400:
        assert "nests deeper" in r.json()["error"]["message"]


def test_chunked_body_over_the_limit_is_413_without_content_length(
        make_gateway: Callable[..., GatewayProcess], stub: StubUpstream) -> None:
    gw = make_gateway(gateway_config(stub.url, max_request_size_mb=0.05))
    limit = int(0.05 * 2**20)
    chunk = b"x" * 8192
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    request = (POST_HEAD + "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    answer = raw_exchange(gw.port, request + pieces + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # and one byte over the limit with a Content-Length, refused before the body is read
    declared = (POST_HEAD + f"Content-Length: {limit + 1}\r\n\r\n").encode()
    assert raw_exchange(gw.port, declared).startswith(b"HTTP/1.1 413")
    ok = httpx.post(gw.url + "/chat/completions", json=chat(unique()), headers=AUTH)
    assert ok.status_code == 200


def test_a_huge_number_of_messages_is_answered(client: httpx.Client, upstream: StubUpstream) -> None:
    # 80,000 messages (~2 MB): 240,001 objects and members, under the 250,000 bound (core/body.py)
    messages = [{"role": "user", "content": str(i)} for i in range(80_000)]
    body = {"model": "gpt-4o", "messages": [*messages, {"role": "user", "content": unique()}]}
    first = client.post("/chat/completions", json=body)
    assert first.status_code == 200
    second = client.post("/chat/completions", json=body)
    assert second.headers["x-reprise-cache"] == "hit"
    assert upstream.calls()["chat"] == 1


@pytest.mark.parametrize("namespace", ["a\r\nx-evil: 1", "a\nb", "ns\u2028", "名前", "a/b", "a:b", "", "x" * 129,
                                       "a\x00b", "..\u0000"])
def test_namespace_that_could_inject_is_a_400(client: httpx.Client, namespace: str) -> None:
    r = client.post("/chat/completions", json=chat(unique(), cache={"namespace": namespace}))
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "cache.namespace"
    assert "x-evil" not in r.headers


def test_response_headers_never_reflect_raw_input(gateway: GatewayProcess, client: httpx.Client) -> None:
    marker = "zz-marker-zz"
    body = chat(f"{marker} {unique()}", model="mock", user=marker, metadata={"k": marker}, cache={"namespace": "ok"})
    for path in ("/chat/completions", "/v1/chat/completions"):
        r = client.post(path, json=body, headers={"cache-control": f"max-age=5, {marker}"})
        assert r.status_code == 200
        assert marker not in str(r.headers).lower()
    # a header value with CR/LF never reaches the app: the HTTP parser refuses it
    raw = (POST_HEAD + "Content-Length: 2\r\nCache-Control: no-cache\rX-Evil: 1\r\n\r\n{}").encode()
    answer = raw_exchange(gateway.port, raw)
    assert answer.startswith(b"HTTP/1.1 400") and b"x-evil" not in answer.lower()


def test_unicode_digits_in_cache_control_are_a_400(client: httpx.Client) -> None:
    """Found by fuzzing: ``max-age=²`` passed ``str.isdigit()`` and crashed ``float()`` (500)."""
    r = client.post("/chat/completions", json=chat(unique()), headers={"cache-control": b"max-age=\xb2"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "Cache-Control"
    with pytest.raises(RequestError):
        parse_controls(None, "max-age=\u0661\u0662")  # Arabic-Indic digits: not seconds either


def test_key_delete_without_a_keys_file_is_not_a_500(client: httpx.Client) -> None:
    """Found by fuzzing: ``/key/delete`` on a gateway without ``keys_file`` hit an assert (500)."""
    r = client.post("/key/delete", json={"keys": ["sk-nope"], "key_sha256": ["ab" * 32]})
    assert r.status_code == 200
    assert r.json() == {"deleted": 0}


def test_key_routes_answer_405_for_a_wrong_method(client: httpx.Client) -> None:
    """Found by schemathesis: a wrong method on /key/* was a 404."""
    assert client.get("/key/generate").status_code == 405
    assert client.delete("/key/list").status_code == 405


@pytest.mark.parametrize("n", [129, 10**9])
def test_n_beyond_openais_bound_is_a_400(client: httpx.Client, upstream: StubUpstream, n: int) -> None:
    """Found while fuzzing: ``n: 1000000000`` went to the provider (the stub tried to build 1e9 answers)."""
    r = client.post("/chat/completions", json=chat(unique(), n=n))
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    assert upstream.calls()["chat"] == 0


def test_openapi_document_is_served_without_auth(gateway: GatewayProcess) -> None:
    doc = orjson.loads(httpx.get(gateway.url + "/openapi.json").content)
    assert doc["openapi"].startswith("3.1")


# --- bodies that are costly to build (issue 12 item 6) -------------------------------------------
# Found: 8 MB of brackets blocked the event loop for 4.3 s; 8 MB of ``[],`` (2.7M lists) for
# about 1 s, during which every other client's hits waited (bench/hostile.py: p50 1 s).


def test_a_body_of_millions_of_arrays_is_a_400_and_hits_keep_flowing(
        client: httpx.Client, gateway: GatewayProcess) -> None:
    hit = {"model": "gpt-4o", "messages": [{"role": "user", "content": unique()}]}
    assert client.post("/chat/completions", json=hit).status_code == 200
    bomb = b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"x":[' + b"[]," * 2_700_000 + b"[]]}"
    answer = client.post("/chat/completions", content=bomb, headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "body_too_complex" and "250000" in error["message"]
    again = client.post("/chat/completions", json=hit)  # the gateway is whole, its cache too
    assert again.headers["x-reprise-cache"] == "hit"


def test_brackets_inside_strings_are_no_reason_to_refuse(client: httpx.Client, upstream: StubUpstream) -> None:
    code = "int main() { return a[b[c]]; }\n" * 40_000  # 120,000 of each bracket, all inside one string
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": code + unique()}]}
    assert client.post("/chat/completions", json=body).status_code == 200
    assert client.post("/chat/completions", json=body).headers["x-reprise-cache"] == "hit"


@pytest.mark.parametrize("field", [
    b'"logit_bias":{' + b",".join(b'"%d":1' % i for i in range(300_000)) + b"}",  # one object, 300k members
    b'"x":[' + b"1.5," * 1_200_000 + b"1]",  # one array, 1.2M numbers
])
def test_flat_bodies_with_too_many_values_are_a_400(client: httpx.Client, field: bytes) -> None:
    """Found by an outside review: a 600k-member object or 1.9M floats (4 brackets each) passed the
    bracket count and stalled other clients' hits ~0.5 s per body."""
    body = b'{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],' + field + b"}"
    answer = client.post("/chat/completions", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["code"] == "body_too_complex"


def test_a_long_text_full_of_commas_is_served(client: httpx.Client) -> None:
    text = "a, b: c, " * 60_000 + unique()  # 240k of the marks that make a body suspect, all inside a string
    assert client.post("/chat/completions", json=chat(text)).status_code == 200


def test_an_integer_beyond_64_bits_is_a_400_and_never_reaches_the_provider(
        client: httpx.Client, upstream: StubUpstream) -> None:
    """Found from outside: 10**25 + 1 became the float 1e+25, keyed and forwarded as such."""
    prompt = unique("wide integer")
    for number in ("10000000000000000000000001", "10000000000000000000000000"):
        body = _with_vendor_id(prompt, number)
        r = client.post("/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "integer_out_of_range"
    assert upstream.calls_for("gpt-4o") == 0
    # the largest 64-bit integers pass, exactly, and two of them keep two keys
    keys = set()
    for number in ("18446744073709551615", "18446744073709551614"):
        body = _with_vendor_id(prompt, number)
        r = client.post("/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        keys.add(r.headers["x-litellm-cache-key"])
        assert upstream.last_request()["body"]["x_vendor"]["id"] == int(number)  # type: ignore[index]
    assert len(keys) == 2


def _with_vendor_id(prompt: str, number: str) -> str:
    """A chat body whose ``x_vendor.id`` is the integer literal ``number``, written as it is."""
    return '{"model":"gpt-4o","messages":[{"role":"user","content":"' + prompt + '"}],"x_vendor":{"id":' + number + "}}"
