"""Embeddings are cached per input item; partial batches ask upstream only for the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson

from reprise.backends.disk import DiskBackend
from reprise.core.entry import decode_entry, encode_entry
from tests.server.conftest import AUTH, GatewayProcess, unique
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


# -- every field the provider sent comes back (stub model "vendor-fields": see MODE_MODELS) --

def vendor(client: httpx.Client, inp: object, **extra: object) -> dict[str, Any]:
    r = client.post("/v1/embeddings", json={"model": "vendor-fields", "input": inp, **extra})
    assert r.status_code == 200, r.text
    return {"cache": r.headers["x-reprise-cache"], **r.json()}


def test_a_miss_and_its_hit_carry_every_field_the_provider_sent(client: httpx.Client,
                                                                 upstream: StubUpstream) -> None:
    """Found: the answer was rebuilt from the vectors alone, so the provider's top-level ``id``
    and extras, each item's extras and ``usage`` extras were dropped, even on the miss."""
    a, b = unique("a"), unique("bb")
    miss = vendor(client, [a, b, a])
    assert miss.pop("cache") == "miss"
    call = upstream.calls_for("vendor-fields")
    assert miss["id"] == f"emb-{call}" and miss["x_vendor"] == {"region": "eu"}
    assert miss["object"] == "list" and miss["model"] == "vendor-fields"
    assert [d["x_item"] for d in miss["data"]] == [{"chars": len(a)}, {"chars": len(b)}, {"chars": len(a)}]
    assert [(d["object"], d["index"]) for d in miss["data"]] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    assert miss["usage"]["x_unit"] == "token" and miss["usage"]["x_call"] == call
    assert miss["usage"]["prompt_tokens"] == 4  # "a <n>", "bb <n>": the duplicate is not asked again
    hit = vendor(client, [a, b, a])
    assert hit.pop("cache") == "hit"
    assert upstream.calls_for("vendor-fields") == call
    # the provider's answer, with the tokens this request cost (none)
    assert hit == {**miss, "usage": {**miss["usage"], "prompt_tokens": 0, "total_tokens": 0}}
    part = vendor(client, [b])  # items stored together: their answer's fields, also for a subset
    assert part.pop("cache") == "hit"
    assert part == {**hit, "data": [{**hit["data"][1], "index": 0}]}
    b64 = vendor(client, [a], encoding_format="base64")
    assert b64["id"] == f"emb-{call + 1}" and isinstance(b64["data"][0]["embedding"], str)
    assert b64["data"][0]["x_item"] == {"chars": len(a)}
    assert vendor(client, [a], encoding_format="base64") == {**b64, "cache": "hit", "usage": {
        **b64["usage"], "prompt_tokens": 0, "total_tokens": 0}}


def test_an_answer_from_several_provider_answers_carries_only_the_fields_they_agree_on(
        client: httpx.Client, upstream: StubUpstream) -> None:
    a, b, c = unique("a"), unique("bb"), unique("ccc")
    first, second = vendor(client, [a]), vendor(client, [b])
    assert first["id"] != second["id"]
    mixed = vendor(client, [b, c, a])  # two items from two stored answers, one from a fresh call
    assert mixed["cache"] == "miss"
    assert "id" not in mixed  # three answers, three ids: none of them is this answer's
    assert mixed["x_vendor"] == {"region": "eu"} and mixed["model"] == "vendor-fields"
    assert mixed["object"] == "list"
    assert [d["x_item"] for d in mixed["data"]] == [{"chars": len(b)}, {"chars": len(c)}, {"chars": len(a)}]
    assert mixed["data"][0]["embedding"] == second["data"][0]["embedding"]
    assert mixed["data"][2]["embedding"] == first["data"][0]["embedding"]
    call = upstream.calls_for("vendor-fields")
    # usage is the call this request made (for c alone), as the provider sent it
    assert mixed["usage"] == {"prompt_tokens": 2, "total_tokens": 2, "x_unit": "token", "x_call": call}
    hits = vendor(client, [a, b])
    assert hits["cache"] == "hit" and "id" not in hits and hits["x_vendor"] == {"region": "eu"}
    assert hits["usage"] == {"prompt_tokens": 0, "total_tokens": 0, "x_unit": "token"}  # x_call differs
    assert [d["x_item"] for d in hits["data"]] == [{"chars": len(a)}, {"chars": len(b)}]
    assert upstream.calls_for("vendor-fields") == call


def test_entries_stored_before_the_answer_was_kept_are_still_served(make_gateway: Callable[..., GatewayProcess],
                                                                    tmp_path: Path, upstream: StubUpstream) -> None:
    """An entry written by an earlier version holds only the vector's JSON."""
    gw = make_gateway(cache_params={"type": "disk", "disk_cache_dir": str(tmp_path / "disk"), "ttl": 600})
    old, new = unique("old"), unique("new")
    with httpx.Client(base_url=gw.url, headers=AUTH, timeout=10) as c:
        first = c.post("/embeddings", json={"model": "vendor-fields", "input": old})
        vector = first.json()["data"][0]["embedding"]
        asyncio.run(rewrite_as_vector_only(tmp_path / "disk", first.headers["x-litellm-cache-key"], vector))
        hit = c.post("/embeddings", json={"model": "vendor-fields", "input": old})
        assert hit.headers["x-reprise-cache"] == "hit"
        assert hit.json() == {"object": "list", "model": "vendor-fields",
                              "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        c.post("/embeddings", json={"model": "vendor-fields", "input": new})
        both = c.post("/embeddings", json={"model": "vendor-fields", "input": [new, old]}).json()
        assert "id" not in both and "x_vendor" not in both  # the old entry's answer has no fields
        assert both["data"][0]["x_item"] == {"chars": len(new)} and both["data"][1]["embedding"] == vector
    assert upstream.calls_for("vendor-fields") == 2


async def rewrite_as_vector_only(directory: Path, key: str, vector: list[float]) -> None:
    backend = DiskBackend(directory=directory)
    try:
        raw = await backend.get(key)
        assert raw is not None
        entry = decode_entry(raw)
        await backend.set(key, encode_entry(replace(entry, body=orjson.dumps(vector))), None)
    finally:
        await backend.aclose()


def test_an_answer_whose_own_fields_are_oversized_is_sent_whole_but_not_stored(client: httpx.Client,
                                                                                 upstream: StubUpstream) -> None:
    """An answer's top-level fields are copied into each of its items' entries: past 16 KiB
    they would multiply by up to 2,048, so such an answer is passed on, not stored."""
    inputs = [unique("a"), unique("b")]
    for call in (1, 2):
        r = client.post("/embeddings", json={"model": "vendor-fields-oversized", "input": inputs})
        assert r.status_code == 200 and r.headers["x-reprise-cache"] == "miss"
        assert r.json()["x_padding"] == "p" * 20_000 and len(r.json()["data"]) == 2
        assert upstream.calls_for("vendor-fields-oversized") == call
