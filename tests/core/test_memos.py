"""The hot-path memos stay bounded and agree with what they memoise."""

from __future__ import annotations

import orjson
import pytest

from reprise.core.chat_request import ChatFactsMemo, chat_facts, controls_of
from reprise.core.streaming import ReplayMemo, render_sse
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
    first = memo.render(answer, usage)
    assert first == render_sse(orjson.loads(answer), usage)
    assert memo.render(answer, usage) is first
