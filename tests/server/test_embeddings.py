"""Embeddings are cached per input item; partial batches ask upstream only for the rest."""

from __future__ import annotations

import httpx

from tests.server.conftest import unique
from tests.support.stub_upstream import StubUpstream


def embed(client: httpx.Client, inp: object, **extra: object) -> httpx.Response:
    return client.post("/embeddings", json={"model": "text-embedding-3-small", "input": inp, **extra})


def test_single_item_miss_then_hit(client: httpx.Client, upstream: StubUpstream) -> None:
    text = unique()
    first = embed(client, text)
    assert first.status_code == 200
    assert first.headers["x-reprise-cache"] == "miss"
    second = embed(client, text)
    assert second.headers["x-reprise-cache"] == "hit"
    assert second.json()["data"] == first.json()["data"]
    assert second.json()["usage"]["prompt_tokens"] == 0
    assert upstream.calls()["embeddings"] == 1


def test_partial_batch_asks_only_for_missing_in_order(client: httpx.Client, upstream: StubUpstream) -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    ab = embed(client, [a, b]).json()["data"]
    mixed = embed(client, [b, c, a])
    assert mixed.headers["x-reprise-cache-hits"] == "2/3"
    data = mixed.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2]
    assert data[0]["embedding"] == ab[1]["embedding"]
    assert data[2]["embedding"] == ab[0]["embedding"]
    fresh_c = embed(client, c, cache={"no-store": True, "no-cache": True}).json()["data"][0]
    assert data[1]["embedding"] == fresh_c["embedding"]
    calls = upstream.calls()
    assert calls["embeddings"] == 3
    assert calls["embedding_items"] == 2 + 1 + 1


def test_token_inputs_and_encoding_format_are_keyed(client: httpx.Client, upstream: StubUpstream) -> None:
    tokens = [[1, 2, 3], [4, 5, int(unique("0").split()[1]) % 50000]]
    embed(client, tokens)
    assert embed(client, tokens).headers["x-reprise-cache"] == "hit"
    text = unique()
    floats = embed(client, text).json()["data"][0]["embedding"]
    b64 = embed(client, text, encoding_format="base64")
    assert b64.headers["x-reprise-cache"] == "miss"
    assert isinstance(b64.json()["data"][0]["embedding"], str)
    assert isinstance(floats, list)


def test_bad_embedding_input(client: httpx.Client) -> None:
    for inp, param in ((None, "input"), ([], "input"), ([1.5], "input[0]"), ({"a": 1}, "input")):
        r = embed(client, inp)
        assert r.status_code == 400, inp
        assert r.json()["error"]["param"] == param


def test_duplicate_inputs_go_upstream_once_and_come_back_in_place(client: httpx.Client,
                                                                  upstream: StubUpstream) -> None:
    a, b = unique("a"), unique("b")
    r = embed(client, [a, b, a, a, b])
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["index"] for d in data] == [0, 1, 2, 3, 4]
    assert data[0]["embedding"] == data[2]["embedding"] == data[3]["embedding"] != data[1]["embedding"]
    assert upstream.calls()["embedding_items"] == 2
    bypass = embed(client, [a, b, a], cache={"no-cache": True, "no-store": True})
    assert [d["embedding"] for d in bypass.json()["data"]] == [data[0]["embedding"], data[1]["embedding"],
                                                                 data[0]["embedding"]]


def test_embedding_inputs_are_bounded(client: httpx.Client, upstream: StubUpstream) -> None:
    many = embed(client, [f"x{i}" for i in range(2049)])
    assert many.status_code == 400
    assert many.json()["error"]["code"] == "too_many_inputs" and "2048" in many.json()["error"]["message"]
    big = embed(client, ["y" * 600_001, "z" * 600_000])
    assert big.status_code == 400 and big.json()["error"]["code"] == "input_too_large"
    assert upstream.calls()["embeddings"] == 0
    assert embed(client, [f"{unique()} {i}" for i in range(2048)]).status_code == 200


def test_duplicates_go_upstream_once_also_when_the_cache_is_bypassed(client: httpx.Client,
                                                                     upstream: StubUpstream) -> None:
    a = unique("a")
    r = embed(client, [a, a, a], cache={"no-cache": True, "no-store": True})
    assert r.status_code == 200 and len({str(d["embedding"]) for d in r.json()["data"]}) == 1
    assert upstream.calls()["embedding_items"] == 1


def assert_invalid_and_not_stored(client: httpx.Client, upstream: StubUpstream, model: str,
                                  inputs: list[str], message: str) -> None:
    r = client.post("/embeddings", json={"model": model, "input": inputs})
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["type"] == "upstream_error" and message in error["message"], error
    for text in inputs:  # nothing of the batch was stored: each item alone asks the provider again
        before = upstream.calls_for(model)
        client.post("/embeddings", json={"model": model, "input": text})
        assert upstream.calls_for(model) == before + 1, text


def test_items_not_indexed_0_to_n_are_refused_not_stored_by_position(client: httpx.Client,
                                                                     upstream: StubUpstream) -> None:
    """Each vector is stored as its own input's answer: two items both index 0 (found: stored
    by position, so B alone was a hit with a vector that may be A's)."""
    assert_invalid_and_not_stored(client, upstream, "dup-index", [unique("a"), unique("b")],
                                  "not indexed 0..1, each once")


def test_an_embedding_that_is_not_a_list_of_numbers_is_refused_and_not_stored(client: httpx.Client,
                                                                              upstream: StubUpstream) -> None:
    for bad in ("null", "mixed", "bool"):
        assert_invalid_and_not_stored(client, upstream, "bad-vectors", [unique("fine"), unique(bad)],
                                      "embedding 1 is not a list of numbers")
    good = [unique("fine"), unique("also fine")]
    for status in ("miss", "hit"):
        r = client.post("/embeddings", json={"model": "bad-vectors", "input": good})
        assert r.status_code == 200 and r.headers["x-reprise-cache"] == status
    r = client.post("/embeddings", json={"model": "bad-vectors", "input": good, "encoding_format": "base64"})
    assert r.status_code == 200 and all(isinstance(d["embedding"], str) for d in r.json()["data"])
