"""Replay gives back what the miss gave, in all four directions, for any answer.

A provider's answer is generated over OpenAI's chat schema (content or null, refusal,
reasoning_content, tool calls, legacy function_call, annotations, audio, logprobs,
system_fingerprint, service_tier, usage with its details, n>1 choices) plus fields
nobody has heard of, at the top, choice, message and tool-call level. Then:

(a) plain -> plain: the stored bytes are the answer (the cache keeps them as they are);
(b) plain -> stream: ``assemble(render_sse(c)) == c``;
(c) stream -> plain: a stream built from ``c`` (every string split across chunks, choices
    interleaved, keep-alives, ``\\n``/``\\r\\n``/``\\r`` line ends) fed in any byte slices
    assembles to ``c``;
(d) stream -> stream: the forwarded events are the input bytes, line ends normalised, minus
    a withheld usage chunk; when the merge replaced a value the provider sent in an earlier
    chunk (a top-level field with other values in earlier chunks: OpenAI's ``obfuscation``,
    a vendor's counter; or a choice-level one), the replay is those events again, the usage
    chunk sent as the client asked; otherwise it is rendered from the assembly, and
    assembling it again gives the answer back.

What the SSE format cannot carry, and so is normalised: with ``include_usage`` an absent
``usage`` comes back as ``null`` (OpenAI puts ``usage: null`` in every chunk); without
it, no usage comes back.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from reprise.core.chat_answer import is_chat_completion
from reprise.core.replay_memo import replay
from reprise.core.sse_replay import render_sse
from reprise.core.streaming import StreamAssembler

KNOWN = frozenset({
    "id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier", "error",
    "x_groq", "index", "message", "delta", "finish_reason", "logprobs", "stop_reason", "role", "content",
    "refusal", "reasoning_content", "reasoning", "tool_calls", "function_call", "audio", "annotations", "type",
    "function", "name", "arguments", "data", "transcript", "expires_at", "url_citation", "token", "logprob",
    "bytes", "top_logprobs", "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
    "completion_tokens_details",
})
IDENTIFIERS = frozenset({"role", "id", "type"})

names = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True).filter(lambda n: n not in KNOWN)
texts = st.text(max_size=16)
ints = st.integers(-(2**53), 2**53)
scalars = st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False) | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3), max_leaves=8
)
present = st.booleans() | ints | texts | st.lists(json_values, max_size=3) | st.dictionaries(names, json_values,
                                                                                             max_size=3)
unknown = st.dictionaries(names, json_values, max_size=2)
counts = st.integers(0, 1000)


def with_unknown(fixed: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda extra, base: {**extra, **base}, unknown, fixed)


def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Each field present or not."""
    return st.fixed_dictionaries({}, optional=fields)


tool_calls = st.lists(
    with_unknown(st.fixed_dictionaries({
        "id": st.from_regex(r"call_[A-Za-z0-9]{1,8}", fullmatch=True),
        "type": st.just("function"),
        "function": with_unknown(st.fixed_dictionaries({"name": texts, "arguments": texts})),
    })),
    max_size=3,
)
annotation_lists = st.lists(st.fixed_dictionaries({
    "type": st.just("url_citation"),
    "url_citation": st.fixed_dictionaries({"start_index": counts, "end_index": counts, "title": texts, "url": texts}),
}), max_size=2)
audio = st.none() | st.fixed_dictionaries({"id": st.text(min_size=1, max_size=8), "data": texts,
                                           "transcript": texts, "expires_at": counts})
messages = st.builds(
    lambda base, more, extra: {**extra, **base, **more},
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | texts}),
    optional(refusal=st.none() | texts, reasoning_content=texts, reasoning=texts, tool_calls=tool_calls,
             function_call=st.fixed_dictionaries({"name": texts, "arguments": texts}), annotations=annotation_lists,
             audio=audio),
    unknown,
)
token_logprobs = st.lists(st.fixed_dictionaries({
    "token": texts, "logprob": st.floats(-100, 0), "bytes": st.none() | st.lists(st.integers(0, 255), max_size=4),
    "top_logprobs": st.lists(st.fixed_dictionaries({"token": texts, "logprob": st.floats(-100, 0)}), max_size=2),
}), max_size=3)
logprobs = st.none() | st.fixed_dictionaries({"content": st.none() | token_logprobs,
                                              "refusal": st.none() | token_logprobs})
finish_reasons = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "function_call"])
usages = st.none() | with_unknown(st.fixed_dictionaries(
    {"prompt_tokens": counts, "completion_tokens": counts, "total_tokens": counts},
    optional={
        "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": counts, "audio_tokens": counts}),
        "completion_tokens_details": st.fixed_dictionaries({
            "reasoning_tokens": counts, "audio_tokens": counts,
            "accepted_prediction_tokens": counts, "rejected_prediction_tokens": counts}),
    },
))


@st.composite
def completions(draw: st.DrawFn) -> dict[str, Any]:
    """A provider's ``chat.completion``, with fields unknown to us at every level."""
    choices = []
    for index in range(draw(st.integers(1, 3))):
        choice = {**draw(unknown), "index": index, "message": draw(messages),
                  **draw(optional(logprobs=logprobs, stop_reason=st.none() | counts | texts)),
                  "finish_reason": draw(finish_reasons)}
        choices.append(choice)
    top = {"id": draw(st.from_regex(r"chatcmpl-[a-z0-9]{1,8}", fullmatch=True)), "object": "chat.completion",
           "created": draw(counts), "model": draw(texts), "choices": choices}
    top |= draw(optional(system_fingerprint=st.none() | texts, service_tier=st.none() | texts,
                         x_groq=st.fixed_dictionaries({"id": texts}), usage=usages))
    return {**draw(unknown), **top}


def assemble(data: bytes) -> StreamAssembler:
    asm = StreamAssembler()
    asm.feed(data)
    return asm


def with_usage(completion: dict[str, Any], include_usage: bool) -> dict[str, Any]:
    """What a replay can give back of ``completion``'s usage (see the module docstring)."""
    rest = {k: v for k, v in completion.items() if k != "usage"}
    return {**rest, "usage": completion.get("usage")} if include_usage else rest


# -- (a) and (b) --------------------------------------------------------------------------------

@given(completions())
def test_plain_answer_is_stored_and_replayed_as_is(completion: dict[str, Any]) -> None:
    assert is_chat_completion(completion)
    assert orjson.loads(orjson.dumps(completion)) == completion


@given(completions(), st.booleans())
def test_plain_answer_replayed_as_a_stream_assembles_back(completion: dict[str, Any], include_usage: bool) -> None:
    sse = render_sse(completion, include_usage)
    for event in sse.removesuffix(b"\n\n").split(b"\n\n"):
        assert event.startswith(b"data: ")
    asm = assemble(sse)
    assert asm.complete
    assert asm.completion() == with_usage(completion, include_usage)


# -- a stream built from a completion --------------------------------------------------------

def split(draw: st.DrawFn, key: str, value: Any) -> list[Any]:
    """Fragments of ``value`` whose merge by the streaming rules is ``value`` again."""
    if key == "tool_calls" and isinstance(value, list):
        return spread(draw, [[{"index": i, **part} for part in split_object(draw, call)]
                             for i, call in enumerate(value)], list)
    if value is None or key in IDENTIFIERS:
        return [value] * draw(st.integers(1, 2))
    if isinstance(value, str | list):
        cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=3)))
        bounds = [0, *cuts, len(value)]
        return [value[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    if isinstance(value, dict):
        return split_object(draw, value)
    earlier = draw(st.lists(ints, max_size=1))  # replaced by the last non-null value
    return [*earlier, value, *draw(st.lists(st.none(), max_size=1))]


def split_object(draw: st.DrawFn, obj: dict[str, Any]) -> list[dict[str, Any]]:
    return spread(draw, [[{key: part} for part in split(draw, key, value)] for key, value in obj.items()], dict)


def spread(draw: st.DrawFn, fields: list[list[Any]], kind: type) -> list[Any]:
    """Put each field's fragments, in order, into distinct frames of one shared list."""
    width = max((len(parts) for parts in fields), default=1) + draw(st.integers(0, 1))
    frames: list[Any] = [kind() for _ in range(width)]
    for parts in fields:
        slots = sorted(draw(st.lists(st.integers(0, width - 1), min_size=len(parts), max_size=len(parts),
                                     unique=True)))
        for slot, part in zip(slots, parts, strict=True):
            (frames[slot].update if kind is dict else frames[slot].append)(part)
    return frames


def last_wins(draw: st.DrawFn, value: Any) -> list[Any]:
    """Fragments of a choice- or top-level field: the last non-null one is kept."""
    if value is None:
        return [None] * draw(st.integers(1, 2))
    return [*draw(st.lists(present, max_size=1)), value,
            *draw(st.lists(st.none(), max_size=1))]


def choice_chunks(draw: st.DrawFn, choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``choices`` items streaming ``choice``; the last one has its ``finish_reason``."""
    index = choice["index"]
    fields = [[{"delta": d} for d in split(draw, "message", choice["message"])]]
    if "logprobs" in choice:
        fields.append([{"logprobs": p} for p in split(draw, "logprobs", choice["logprobs"])])
    for key, value in choice.items():
        if key not in ("index", "message", "logprobs", "finish_reason"):
            fields.append([{key: v} for v in last_wins(draw, value)])
    items = [{"index": index, "delta": {}, **frame, "finish_reason": None} for frame in spread(draw, fields, dict)]
    items.append({"index": index, "delta": {}, "finish_reason": choice["finish_reason"]})
    return items


@st.composite
def streams(draw: st.DrawFn, completion: dict[str, Any]) -> tuple[list[bytes], bytes | None, bool]:
    """The SSE events of a provider streaming ``completion``, its usage chunk if any, and whether
    a top-level field has other values in earlier chunks."""
    per_choice = [choice_chunks(draw, choice) for choice in completion["choices"]]
    order = draw(st.permutations([i for i, items in enumerate(per_choice) for _ in items]))
    top = {k: v for k, v in completion.items() if k not in ("object", "choices", "usage")}
    top["object"] = "chat.completion.chunk"
    sparse = draw(st.booleans())  # some providers send id/model only in the first chunk
    if "usage" in completion:
        top["usage"] = None
    chunks = [{**(top if i == 0 or not sparse else {}), "choices": [per_choice[c].pop(0)]}
              for i, c in enumerate(order)]
    varied = vary_per_chunk(draw, chunks, top)
    chunks[-1] |= top
    usage = None
    if "usage" in completion:
        usage = sse(draw, {**top, "choices": [], "usage": completion["usage"]})
    events = [sse(draw, chunk) for chunk in chunks]
    for _ in range(draw(st.integers(0, 2))):
        events.insert(draw(st.integers(0, len(events))), b": ping\n\n")
    return [*events, *([usage] if usage else []), sse(draw, None)], usage, varied


def vary_per_chunk(draw: st.DrawFn, chunks: list[dict[str, Any]], top: dict[str, Any]) -> bool:
    """Give top-level fields other values in earlier chunks (OpenAI's ``obfuscation``, a vendor's
    counter); the last chunk has the answer's. Whether a value differing from it was drawn."""
    varied = False
    if not draw(st.booleans()):
        return varied
    for key, value in top.items():
        if key in ("object", "usage") or value is None:
            continue
        for chunk in chunks[:-1]:
            if draw(st.booleans()):
                chunk[key] = draw(present)
                varied = varied or chunk[key] != value
    return varied


def sse(draw: st.DrawFn, chunk: dict[str, Any] | None) -> bytes:
    data = b"[DONE]" if chunk is None else orjson.dumps(chunk)
    event = draw(st.sampled_from([b"", b"event: message\n"])) + draw(st.sampled_from([b"data: ", b"data:"]))
    return event + data + b"\n\n"


@st.composite
def fed(draw: st.DrawFn, events: list[bytes]) -> list[bytes]:
    """The stream's bytes with some line ending, cut into the slices one read would give."""
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    raw = b"".join(events).replace(b"\n", eol)
    if draw(st.booleans()):
        return [raw[i : i + 1] for i in range(len(raw))]
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=24)))
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


# -- (c) and (d) ------------------------------------------------------------------------------

@settings(deadline=None)
@given(st.data(), completions(), st.booleans())
def test_stream_assembles_to_the_answer_it_streamed(data: st.DataObject, completion: dict[str, Any],
                                                    drop_usage: bool) -> None:
    events, usage, varied = data.draw(streams(completion))
    asm = StreamAssembler(drop_usage_chunk=drop_usage)
    forwarded = b"".join(b"".join(asm.feed(piece)) for piece in data.draw(fed(events)))
    assert asm.done and asm.complete
    assembled = asm.completion()
    assert assembled == completion  # (c)

    withheld = usage if drop_usage and completion.get("usage") is not None else None
    assert forwarded == b"".join(e for e in events if e is not withheld)  # (d): events as they came
    assert asm.lossy or not varied
    recording = asm.recording()
    assert bool(recording) == asm.lossy
    for include_usage in (True, False):  # (d): replayed again as a stream
        sent = replay(orjson.dumps(assembled), include_usage, recording)
        if asm.lossy:  # per-chunk values: the events themselves, the usage chunk as the client asked
            usage_only = usage if completion.get("usage") is not None else None
            assert sent == b"".join(e for e in events if include_usage or e is not usage_only)
            continue
        assert sent == render_sse(assembled, include_usage)
        again = assemble(sent)
        assert again.complete
        assert again.completion() == with_usage(completion, include_usage)


# -- linear time, counted ---------------------------------------------------------------------

class CountingBuffer(bytearray):
    """The assembler's buffer, counting the bytes it appends, scans, copies and moves."""

    work = 0

    def __iadd__(self, other: Any) -> CountingBuffer:  # type: ignore[misc]
        self.work += len(other)
        return super().__iadd__(other)

    def find(self, sub: Any, *bounds: Any) -> int:
        start = bounds[0] if bounds else 0
        found = super().find(sub, *bounds)
        self.work += (found + len(sub) if found >= 0 else len(self)) - start
        return found

    def __getitem__(self, key: Any) -> Any:
        part = super().__getitem__(key)
        self.work += len(part) if isinstance(key, slice) else 1
        return part

    def __delitem__(self, key: Any) -> None:
        before = len(self)
        super().__delitem__(key)
        self.work += len(self)  # the bytes kept are moved to the front (at worst)
        assert len(self) < before


def chunk_event(content: str, finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def test_assembly_work_is_linear_in_the_stream_whatever_the_feeds() -> None:
    """Quadratic buffering (re-slicing the rest per event, rescanning it per feed) fails this."""
    many_small = b"".join([chunk_event("tok "), *[chunk_event(f"w{i} ") for i in range(8000)],
                           chunk_event("", "stop"), b"data: [DONE]\n\n"])  # ~1 MB
    one_huge = b"".join([chunk_event("x" * 1_000_000), chunk_event("", "stop"), b"data: [DONE]\r\n\r\n"])
    cases = [(many_small, 1024, True), (many_small, len(many_small), True), (many_small[:40_000], 1, False),
             (one_huge, 1024, True), (one_huge, 7, True)]
    for raw, size, complete in cases:
        asm = StreamAssembler()
        buffer = asm._events.buf = CountingBuffer()
        longest = max(len(e) for e in raw.split(b"\n\n")) + 2
        for i in range(0, len(raw), size):
            asm.feed(raw[i : i + size])
            assert len(buffer) < longest + size  # never more than one unfinished event
        assert asm._events.buf is buffer  # the same buffer throughout, never a copy
        assert buffer.work <= 4 * len(raw), (size, buffer.work, len(raw))
        assert asm.complete is complete
