"""The hot-path memos stay bounded and agree with what they memoise."""

from __future__ import annotations

import orjson
import pytest

from reprise.core.chat_request import ChatFactsMemo, chat_facts, controls_of
from reprise.core.entry import CacheEntry, decode_entry, encode_entry
from reprise.core.replay_memo import ReplayMemo
from reprise.core.sse_replay import render_sse
from reprise.errors import RequestError


def body(i: int, **extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}], **extra}


def test_facts_memo_is_bounded_in_bytes_and_by_body_size() -> None:
    memo = ChatFactsMemo()
    facts = chat_facts(body(0))
    big = b"x" * (ChatFactsMemo.MAX_BODY + 1)
    memo.put(big, facts)
    assert memo.get(big) is None
    raw = [orjson.dumps(body(i, pad="p" * 60_000)) for i in range(400)]  # 24 MB offered, 16 MiB bound
    for r in raw:
        memo.put(r, facts)
    assert memo._bytes <= ChatFactsMemo.MAX_BYTES
    assert memo.get(raw[-1]) is facts


def test_facts_are_what_the_body_decides() -> None:
    facts = chat_facts(body(1, stream=True, stream_options={"include_usage": True}, cache={"no-cache": True}))
    assert facts.stream and facts.asks_usage and facts.controls.no_cache
    assert controls_of(facts, "no-store").no_store
    with pytest.raises(RequestError):
        chat_facts({"model": "m", "messages": "not a list"})
    with pytest.raises(RequestError):
        chat_facts(body(2, cache={"ttl": "soon"}))


@pytest.mark.parametrize("usage", [True, False])
def test_replay_memo_renders_what_render_sse_renders(usage: bool) -> None:
    answer = orjson.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    memo = ReplayMemo()
    first = memo.render("k", answer, usage)
    assert first == render_sse(orjson.loads(answer), usage)
    assert memo.render("k", answer, usage) is first
    assert memo.render("k", bytes(bytearray(answer)), usage) is first  # equal bytes: the same answer


def _completion(content: str) -> bytes:
    return orjson.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                      "finish_reason": "stop"}]})


def test_replay_memo_never_sends_a_replay_made_for_another_answer() -> None:
    memo = ReplayMemo()
    old, new = _completion("old answer"), _completion("new answer")
    memo.render("k", old, False)
    assert memo.render("k", new, False) == render_sse(orjson.loads(new), False)
    assert memo.render("k", old, False) == render_sse(orjson.loads(old), False)


def test_replay_memo_serves_a_stored_entry_from_its_own_bytes() -> None:
    """A decoded entry's body is a view of the stored bytes: used as it is, and compared whole."""
    memo = ReplayMemo()
    raw = encode_entry(CacheEntry(_completion("stored"), created_at=1.0))
    entry = decode_entry(raw)
    assert isinstance(entry.body, memoryview) and entry.body == _completion("stored")
    first = memo.render("k", entry.body, True)
    assert first == render_sse(orjson.loads(_completion("stored")), True)
    assert memo.render("k", decode_entry(bytes(bytearray(raw))).body, True) is first
    rewritten = decode_entry(encode_entry(CacheEntry(_completion("stored again"), created_at=1.0)))
    assert memo.render("k", rewritten.body, True) == render_sse(orjson.loads(_completion("stored again")), True)


def test_replay_memo_is_bounded_in_bytes_least_recently_used_first_out() -> None:
    answers = {f"k{i}": _completion(f"answer {i} " + "x" * 1000) for i in range(40)}
    memo = ReplayMemo(max_bytes=64_000)  # ~25 replays of ~2.5 KB with their answers
    for key, answer in answers.items():
        memo.render(key, answer, False)
        assert memo.size_bytes <= memo.max_bytes
    kept = memo.render("k39", answers["k39"], False)
    assert memo.render("k39", answers["k39"], False) is kept
    assert memo.render("k0", answers["k0"], False) == render_sse(orjson.loads(answers["k0"]), False)
