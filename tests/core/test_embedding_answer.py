"""The pure part of embeddings caching: items stored with their answer's fields, answers put back together."""

from __future__ import annotations

from typing import Any

import orjson

from reprise.core.embedding_answer import answer_fields, assemble, item_value, stored_vector


def provider_answer(call: str, *vectors: Any, **extra: Any) -> dict[str, Any]:
    return {"object": "list", "id": call, "x_top": {"line": "a\nb"}, **extra,
            "data": [{"object": "embedding", "index": i, "embedding": v, "x_item": f"{call}/{i}\n"}
                     for i, v in enumerate(vectors)],
            "model": "m-1", "usage": {"prompt_tokens": 3, "total_tokens": 3, "x_u": call}}


def stored(reply: dict[str, Any]) -> list[bytes]:
    fields = answer_fields(reply)
    by_index = sorted(reply["data"], key=lambda d: d["index"])
    return [item_value(fields, d, orjson.dumps(d["embedding"])) for d in by_index]


def test_one_answer_comes_back_whole_with_its_usage_or_none_counted() -> None:
    reply = provider_answer("c1", [0.5, -1.0], "AAAAAA==")
    values = stored(reply)
    assert orjson.loads(assemble("alias", values, orjson.dumps(reply["usage"]))) == reply
    hit = orjson.loads(assemble("alias", values, None))
    assert hit == {**reply, "usage": {"prompt_tokens": 0, "total_tokens": 0, "x_u": "c1"}}
    assert orjson.loads(assemble("alias", values[1:] + values[:1], None))["data"] == [
        {**reply["data"][1], "index": 0}, {**reply["data"][0], "index": 1}]


def test_answers_that_differ_keep_only_the_fields_they_share() -> None:
    one, two = provider_answer("c1", [1.0], x_same=1), provider_answer("c2", [2.0], x_same=1, x_only=2)
    mixed = orjson.loads(assemble("alias", stored(one) + stored(two), None))
    assert {k: v for k, v in mixed.items() if k != "data"} == {
        "object": "list", "x_top": {"line": "a\nb"}, "x_same": 1, "model": "m-1",
        "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    assert [d["x_item"] for d in mixed["data"]] == ["c1/0\n", "c2/0\n"]
    fresh = orjson.loads(assemble("alias", stored(one) + stored(two), b'{"prompt_tokens":7,"x_u":"c2"}'))
    assert fresh["usage"] == {"prompt_tokens": 7, "x_u": "c2"}
    other_model = provider_answer("c3", [3.0]) | {"model": "m-2"}
    assert orjson.loads(assemble("alias", stored(one) + stored(other_model), None))["model"] == "alias"


def test_values_stored_before_the_answer_was_kept_are_served_as_items_of_an_answer_without_fields() -> None:
    legacy = [b"[0.25,1.0]", b'"AAAAAA=="']
    assert orjson.loads(assemble("alias", legacy, None)) == {
        "object": "list", "model": "alias", "usage": {"prompt_tokens": 0, "total_tokens": 0},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 1.0]},
                 {"object": "embedding", "index": 1, "embedding": "AAAAAA=="}]}
    with_new = orjson.loads(assemble("alias", [*stored(provider_answer("c1", [0.5])), legacy[0]], None))
    assert "id" not in with_new and with_new["model"] == "alias"
    assert with_new["data"][0]["x_item"] == "c1/0\n"


def test_an_item_without_object_gets_it_and_its_vector_is_found_in_either_format() -> None:
    reply = {"data": [{"index": 0, "embedding": [0.5]}]}
    value = item_value(answer_fields(reply), reply["data"][0], b"[0.5]")
    assert orjson.loads(assemble("alias", [value], None))["data"] == [
        {"object": "embedding", "index": 0, "embedding": [0.5]}]
    assert stored_vector(value) == b"[0.5]" == stored_vector(b"[0.5]")
