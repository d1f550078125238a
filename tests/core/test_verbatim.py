"""The pure part of ``/responses`` and ``/completions``: keys, bypasses, what a stream must be to be stored."""

from __future__ import annotations

import json

import pytest

from reprise.core.keys import chat_key_hash
from reprise.core.sse_record import MAX_RECORDED_BYTES, CompletionsRecorder, ResponsesRecorder
from reprise.core.verbatim import (
    COMPLETIONS,
    RESPONSES,
    completions_facts,
    forwarded,
    judge_completion,
    judge_response,
    key_hash,
    responses_facts,
)
from reprise.errors import RequestError


def event(kind: str, n: int, **data: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': n, **data})}\n\n".encode()


def responses_stream(last: str = "response.completed", status: str = "completed") -> bytes:
    return (event("response.created", 0, response={"status": "in_progress"})
            + event("response.output_text.delta", 1, delta="hi")
            + event(last, 2, response={"status": status, "usage": {"total_tokens": 3}}))


def test_everything_forwarded_is_keyed_and_gateway_fields_are_not() -> None:
    body = {"model": "m", "input": "x"}
    base = key_hash(RESPONSES, body)
    for field, value in (("stream", True), ("user", "u"), ("metadata", {"a": "b"}), ("stream_options", {}),
                         ("previous_response_id", "resp_1"), ("some_new_option", 1)):
        assert key_hash(RESPONSES, {**body, field: value}) != base, field
        assert field in forwarded(RESPONSES, {**body, field: value})
    for field in ("cache", "api_base", "api_key", "extra_headers", "mock_response"):
        assert key_hash(RESPONSES, {**body, field: "v"}) == base, field
        assert field not in forwarded(RESPONSES, {**body, field: "v"})
    assert "metadata" not in forwarded(COMPLETIONS, {"model": "m", "prompt": "p", "metadata": {}})
    assert key_hash(RESPONSES, {**body, "temperature": 1}) == key_hash(RESPONSES, {**body, "temperature": 1.0})
    assert key_hash(RESPONSES, {**body, "top_p": None}) == base


def test_the_route_kind_is_in_the_key() -> None:
    body = {"model": "m", "prompt": "p", "input": "p", "messages": [{"role": "user", "content": "p"}]}
    assert len({key_hash(RESPONSES, body), key_hash(COMPLETIONS, body), chat_key_hash(body)}) == 3


def test_background_and_conversation_bypass_previous_response_id_does_not() -> None:
    assert responses_facts({"model": "m", "input": "x", "background": True}).bypass == "background"
    assert responses_facts({"model": "m", "input": "x", "conversation": "conv_1"}).bypass == "conversation"
    assert responses_facts({"model": "m", "input": "x", "previous_response_id": "resp_1"}).bypass is None
    assert completions_facts({"model": "m", "prompt": "p", "stream": True}).stream


@pytest.mark.parametrize("body", [[], {"input": "x"}, {"model": "m", "stream": "true"},
                                  {"model": "m", "background": 1}, {"model": "m", "conversation": 3}])
def test_malformed_responses_bodies(body: object) -> None:
    with pytest.raises(RequestError):
        responses_facts(body)


def test_plain_answers_are_judged() -> None:
    assert judge_response({"object": "response", "status": "completed"}) is True
    assert judge_response({"object": "response", "status": "incomplete"}) is False
    assert judge_response({"object": "response", "status": "queued"}) is False
    assert judge_response({"error": {}}) is None and judge_response([]) is None
    assert judge_completion({"choices": [{"text": "a", "finish_reason": "stop"}]}) is True
    assert judge_completion({"choices": [{"text": "a", "finish_reason": None}]}) is False
    assert judge_completion({"choices": []}) is None
    error = {"message": "upstream overloaded"}
    assert judge_completion({"choices": [{"text": "", "finish_reason": "stop"}], "error": error}) is None
    # found from outside: failures that look finished were stored
    finished = [{"text": "x", "finish_reason": "stop"}]
    assert judge_completion({"object": "error", "message": "bad", "choices": finished}) is None
    assert judge_response({"object": "response", "status": "completed", "error": {"code": "server_error"}}) is None
    assert judge_response({"object": "response", "status": "completed", "error": None}) is True


def test_a_completed_responses_stream_carrying_an_error_is_never_complete() -> None:
    failed = {"id": "resp_1", "object": "response", "status": "completed", "output": [],
              "error": {"code": "server_error", "message": "The model failed"}}
    data = json.dumps({"type": "response.completed", "response": failed}).encode()
    event = b"event: response.completed\ndata: " + data + b"\n\n"
    recorder = ResponsesRecorder()
    recorder.feed(event)
    assert recorder.done and not recorder.complete


def test_a_completed_responses_stream_is_recorded_byte_for_byte_whatever_the_chunking() -> None:
    sse = responses_stream()
    recorder = ResponsesRecorder()
    forwarded_events = [e for i in range(len(sse)) for e in recorder.feed(sse[i:i + 1])]
    assert recorder.done and recorder.complete
    assert b"".join(forwarded_events) == recorder.recorded() == sse
    assert recorder.completion()["usage"] == {"total_tokens": 3}


@pytest.mark.parametrize("sse", [
    responses_stream("response.failed", "failed"),
    responses_stream("response.incomplete", "incomplete"),
    responses_stream("error"),
    responses_stream("response.completed", "in_progress"),
    responses_stream()[:-40],  # cut before its last event
    b"event: x\ndata: not json\n\n" + responses_stream(),
])
def test_responses_streams_that_are_not_complete_are_not_stored(sse: bytes) -> None:
    recorder = ResponsesRecorder()
    recorder.feed(sse)
    assert not recorder.complete


def test_completions_streams_need_done_and_every_finish_reason() -> None:
    def chunk(text: str, finish: str | None, index: int = 0) -> bytes:
        choice = {"text": text, "index": index, "finish_reason": finish}
        return b"data: " + json.dumps({"object": "text_completion", "choices": [choice]}).encode() + b"\n\n"

    whole = chunk("a", None) + chunk("", "stop") + b"data: [DONE]\n\n"
    recorder = CompletionsRecorder()
    recorder.feed(whole)
    assert recorder.complete and recorder.recorded() == whole
    for broken in (whole[:-len(b"data: [DONE]\n\n")], chunk("a", None) + b"data: [DONE]\n\n",
                   whole.replace(b'"index": 0, "finish_reason": "stop"', b'"index": 1, "finish_reason": null'),
                   b'data: {"error": {"message": "x"}}\n\n' + whole):
        recorder = CompletionsRecorder()
        recorder.feed(broken)
        assert not recorder.complete, broken


def test_one_endless_event_is_forwarded_as_it_comes_not_held_whole() -> None:
    # A provider that never ends an event (no blank line) must not make the gateway hold more
    # than the recording bound: past it the bytes are passed on as they come, never stored.
    recorder = ResponsesRecorder()
    fed = event("response.created", 0, response={"status": "in_progress"}) + b"data: "
    forwarded = recorder.feed(fed)
    piece = b"x" * 2**20
    for _ in range(MAX_RECORDED_BYTES // len(piece) + 8):
        forwarded += recorder.feed(piece)
        fed += piece
        assert len(fed) - sum(map(len, forwarded)) <= MAX_RECORDED_BYTES + len(piece)
    assert recorder.overflow and not recorder.complete
    end = b"\n\n" + event("response.completed", 1, response={"status": "completed"})
    forwarded += recorder.feed(end)
    assert recorder.done and not recorder.complete and recorder.unstored_body() is None
    assert b"".join(forwarded) == fed + end  # every byte passed on, in order


def test_done_after_the_last_responses_event_is_kept_and_complete() -> None:
    # Some OpenAI-compatible servers end a Responses stream as a chat stream ends.
    sse = responses_stream() + b"data: [DONE]\n\n"
    recorder = ResponsesRecorder()
    forwarded = recorder.feed(sse)
    assert recorder.complete and recorder.recorded() == b"".join(forwarded) == sse
    for early in (b"data: [DONE]\n\n" + responses_stream(), responses_stream()[:-40] + b"\n\ndata: [DONE]\n\n"):
        recorder = ResponsesRecorder()
        recorder.feed(early)
        assert not recorder.complete, early


@pytest.mark.parametrize("last", ["response.completed", "response.failed"])
def test_a_last_event_longer_than_the_bound_still_ends_the_stream(last: str) -> None:
    # response.completed repeats the whole output: past the bound it is never held nor parsed,
    # but its name says the stream ended (the leader gets no error after a whole answer).
    recorder = ResponsesRecorder()
    text = "y" * (MAX_RECORDED_BYTES + 2**20)
    sse = event("response.created", 0, response={"status": "in_progress"}) + event(
        last, 1, response={"status": "completed", "output_text": text})
    forwarded = [e for i in range(0, len(sse), 2**20) for e in recorder.feed(sse[i:i + 2**20])]
    assert b"".join(forwarded) == sse
    assert recorder.done and recorder.overflow and not recorder.complete


def test_a_prompt_template_without_a_version_is_never_cached() -> None:
    """Its current version is used, which can change under the same body (found from outside)."""
    template = {"model": "m", "input": "greet me", "prompt": {"id": "pmpt_support"}}
    assert responses_facts(template).bypass == "prompt_version"
    assert responses_facts({**template, "prompt": {"id": "pmpt_support", "version": ""}}).bypass == "prompt_version"
    pinned = responses_facts({**template, "prompt": {"id": "pmpt_support", "version": "2"}})
    assert pinned.bypass is None
    assert pinned.key_hash != responses_facts({**template, "prompt": {"id": "pmpt_support", "version": "1"}}).key_hash
