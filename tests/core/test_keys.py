"""Exact keys: what changes the answer changes the key, and nothing else does."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reprise.core.keys import IGNORED_PARAMS, chat_key_hash, embedding_item_hash, storage_key

BASE = {"model": "gpt-4o", "messages": [{"role": "user", "content": "给我讲个笑话"}]}


def test_key_is_64_hex() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", chat_key_hash(BASE))


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 0.2},
        {"top_p": 0.5},
        {"n": 2},
        {"max_tokens": 5},
        {"max_completion_tokens": 5},
        {"stop": ["\n"]},
        {"seed": 1},
        {"response_format": {"type": "json_object"}},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"50256": -100}},
        {"logprobs": True},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "none"},
        {"some_future_param": 1},
    ],
)
def test_answer_changing_params_change_the_key(extra: dict[str, object]) -> None:
    assert chat_key_hash({**BASE, **extra}) != chat_key_hash(BASE)


def test_model_and_messages_change_the_key() -> None:
    assert chat_key_hash({**BASE, "model": "gpt-4o-mini"}) != chat_key_hash(BASE)
    other = {**BASE, "messages": [{"role": "user", "content": "另一个"}]}
    assert chat_key_hash(other) != chat_key_hash(BASE)
    system = {**BASE, "messages": [{"role": "system", "content": "x"}, *BASE["messages"]]}
    assert chat_key_hash(system) != chat_key_hash(BASE)


@pytest.mark.parametrize(
    "extra",
    [
        {"cache": {"ttl": 5}},
        {"stream": True},
        {"stream_options": {"include_usage": True}},
        {"stream_options": {"include_usage": False}},
        {"stream_options": {"include_usage": True, "include_obfuscation": True}},  # OpenAI's default
        {"stream_options": {}},
        {"stream_options": None},
        {"user": "alice"},
        {"metadata": {"trace": "x"}},
        {"temperature": None},
    ],
)
def test_params_that_cannot_change_the_answer_are_ignored(extra: dict[str, object]) -> None:
    assert chat_key_hash({**BASE, **extra}) == chat_key_hash(BASE)


@pytest.mark.parametrize("options", [{"include_obfuscation": False}, {"include_usage": True, "x_vendor_chunking": 2}])
def test_stream_options_other_than_include_usage_are_keyed(options: dict[str, object]) -> None:
    """Found from outside: ``stream_options`` was forwarded whole and hashed not at all, so a client
    that turned OpenAI's per-chunk ``obfuscation`` off was served a stream recorded with it on."""
    assert chat_key_hash({**BASE, "stream": True, "stream_options": options}) != chat_key_hash(BASE)


def test_integral_sampling_floats_are_normalised() -> None:
    assert chat_key_hash({**BASE, "temperature": 1}) == chat_key_hash({**BASE, "temperature": 1.0})


def test_key_order_and_whitespace_do_not_matter() -> None:
    text_a = '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"seed":1}'
    text_b = '{ "seed" : 1,\n "messages": [ {"content": "hi", "role": "user"} ],  "model": "gpt-4o" }'
    assert chat_key_hash(orjson.loads(text_a)) == chat_key_hash(orjson.loads(text_b))


def test_order_inside_a_value_is_part_of_the_key() -> None:
    """Found from outside: the key sorted keys at every depth, but a JSON schema's property
    order is the order structured outputs write the fields in ({reasoning, answer} makes the
    model reason first), so two schemas differing only in order shared an answer."""
    def schema(*names: str) -> dict[str, object]:
        props = {name: {"type": "string"} for name in names}
        return {"type": "json_schema", "json_schema": {"name": "r", "strict": True, "schema": {
            "type": "object", "properties": props, "required": ["answer", "reasoning"]}}}
    first = chat_key_hash({**BASE, "response_format": schema("reasoning", "answer")})
    assert first != chat_key_hash({**BASE, "response_format": schema("answer", "reasoning")})
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "string"}}}}}
    swapped = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}
    assert chat_key_hash({**BASE, "tools": [tool]}) != chat_key_hash({**BASE, "tools": [swapped]})


def test_ignored_list_is_documented_as_promised() -> None:
    assert {"cache", "stream", "stream_options", "user", "metadata"} <= IGNORED_PARAMS


def test_embedding_items_are_keyed_alone_and_differ_from_chat() -> None:
    body = {"model": "emb", "input": ["a", "b"]}
    a = embedding_item_hash(body, "a")
    assert a == embedding_item_hash({"model": "emb", "input": "a"}, "a")
    assert a != embedding_item_hash(body, "b")
    assert a != embedding_item_hash({**body, "dimensions": 4}, "a")
    assert a != chat_key_hash({"model": "emb", "input": "a"})


def test_storage_key_namespacing() -> None:
    assert storage_key("abc", None) == "abc"
    assert storage_key("abc", "team-a") == "team-a:abc"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_key_is_independent_of_top_level_and_message_field_order(params: dict[str, object]) -> None:
    body = {**BASE, **params, "messages": [{"role": "user", "content": "hi", **params}]}
    reordered = dict(reversed(list(body.items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in body["messages"]]
    assert chat_key_hash(body) == chat_key_hash(reordered)


def test_batch_item_hashes_equal_single_item_hashes() -> None:
    from reprise.core.keys import embedding_item_hashes

    body = {"model": "emb", "input": ["a", "b", [1, 2]], "dimensions": 8, "x_pad": "p" * 1000}
    assert embedding_item_hashes(body, body["input"]) == [embedding_item_hash(body, i) for i in body["input"]]
    assert len(set(embedding_item_hashes(body, body["input"]))) == 3
    assert embedding_item_hashes(body, ["a"]) != embedding_item_hashes({**body, "x_pad": "q"}, ["a"])
