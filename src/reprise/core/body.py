"""A request body's bytes → one JSON object, with bounded cost.

One parse per body, by orjson (>= 3.9 stops at 1,024 levels of nesting by itself, fast,
where older versions overflowed the C stack). orjson *writes* at most 255 levels, and a
body must be written again to be hashed into a key and sent upstream, so 256–1,024
levels are refused here too: a C-speed count of brackets finds the only bodies that can
nest that deep, and only those are written once to check (no second parse).

What a parse costs is the number of values it makes, not the bytes: 8 MB of text parses in
~10 ms, 8 MB of ``[],`` (2.7M lists) in ~0.5 s with their freeing, an object of 600k members
in ~0.45 s with its sorted hashing, and orjson holds the GIL throughout, so a worker thread
would block the event loop just as long (measured: 1.04 s inline, 1.20 s in a thread).
Hence :data:`MAX_NODES` and :data:`MAX_ARRAY_SCALARS`. A C-speed count of the bytes that
precede values (``[ { , :``) bounds them from above; a body under :data:`SUSPECT_MARKS` is
parsed at once. Above it those bytes may sit inside strings (a pasted program, a long
text), so :func:`count_values` counts the real values *in another process*
(server/body_parser.py) before this one parses anything.
The cyclic garbage collector, which millions of small containers set off thousands of
times mid-parse, is paused while a large body is parsed.

Integers are exact only within 64 bits (orjson reads ``-2**63 .. 2**64-1`` as ints and anything
beyond as a float, silently): a body holding a longer integer is refused, since it would be
keyed and forwarded as a rounded float, so different integers would share one key and the
provider would get a number the client did not send. Only a body with a run of 19 or more
digits can hold one; only such a body is read a second time, by the standard library, to
tell integers from digits inside strings.
"""

from __future__ import annotations

import gc
import json
import re
from typing import Any

import orjson

from reprise.errors import RequestError

INT_MIN, INT_MAX = -(2**63), 2**64 - 1
"""The integers a body may hold: what orjson reads exactly (and OpenAI's int64 parameters fit)."""
_LONG_DIGITS = re.compile(rb"[0-9]{19}")

MAX_DEPTH = 255
"""Levels of nesting a body may have: as deep as orjson can write back."""
MAX_NODES = 250_000
"""Arrays, objects and object members a body may hold (~40-120 ms to build and free). A chat
request with a thousand messages of a few parts each uses some thousands; 2,048 embedding
inputs of token ids, 2,049."""
MAX_ARRAY_SCALARS = 1_000_000
"""Numbers, strings, booleans and nulls inside arrays (token ids: 1M is ~6 MB of them, ~40-60 ms)."""
SUSPECT_MARKS = 20_000
"""Bodies with more ``[ { , :`` bytes than this have their values counted off the event loop."""
GC_PAUSE_BYTES = 64 * 1024
"""Bodies at least this large are parsed with the cyclic GC paused (smaller ones cannot set it off much)."""


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a dict, or RequestError (400) saying why not."""
    pause = len(raw) >= GC_PAUSE_BYTES and gc.isenabled()
    if pause:
        gc.disable()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise _too_deep() from None
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    finally:
        if pause:
            gc.enable()
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:  # only such a body can nest deeper
        try:
            orjson.dumps(body)
        except orjson.JSONEncodeError:
            raise _too_deep() from None
    if _LONG_DIGITS.search(raw) is not None:  # after the depth check: the standard library recurses
        _refuse_wide_integers(raw)
    return body


def is_suspect(raw: bytes) -> bool:
    """Whether ``raw`` may hold more values than is cheap to build here (C-speed counts, ~1 ms/MB).

    Every array, object, member and array item is preceded by one of these bytes, so their
    count bounds the values from above (the same bytes inside strings only make it looser).
    """
    return raw.count(b"[") + raw.count(b"{") + raw.count(b",") + raw.count(b":") > SUSPECT_MARKS


def count_values(raw: bytes) -> tuple[int, int]:
    """(arrays, objects and object members; scalar array items) in ``raw``; (-1, -1) if not JSON.

    Run in a helper process: it costs what parsing the body costs, which is the point.
    Members and containers are what costs most to build (a dict entry, a key string, a list);
    a scalar in an array (a token id, a float) costs a fraction, so it has its own, larger bound.
    """
    gc.disable()  # a throwaway process: nothing to collect
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return -1, -1
    nodes = scalars = 0
    pending = [value]
    while pending and nodes <= MAX_NODES and scalars <= MAX_ARRAY_SCALARS:
        item = pending.pop()
        if isinstance(item, dict):
            nodes += 1 + len(item)
            pending.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            nested = [v for v in item if isinstance(v, (dict, list))]
            nodes += 1
            scalars += len(item) - len(nested)
            pending.extend(nested)
    return nodes, scalars


def too_complex(nodes: int, scalars: int) -> bool:
    return nodes > MAX_NODES or scalars > MAX_ARRAY_SCALARS


def too_many_values() -> RequestError:
    return RequestError(f"the request body holds more than {MAX_NODES} JSON arrays, objects and object members, "
                        f"or more than {MAX_ARRAY_SCALARS} array items", code="body_too_complex")


def _refuse_wide_integers(raw: bytes) -> None:
    """RequestError (400) if ``raw`` holds an integer outside :data:`INT_MIN`..:data:`INT_MAX`."""

    def exact(text: str) -> int:
        value = int(text)
        if not INT_MIN <= value <= INT_MAX:
            raise RequestError(f"the request body holds the integer {text[:40]}{'...' if len(text) > 40 else ''}, "
                               f"outside the 64-bit range ({INT_MIN} to {INT_MAX}) that this gateway "
                               "keys and forwards exactly: send it as a string, or as a float (e.g. 1.8e19) "
                               "where its exact value does not matter, as in a JSON schema bound",
                               code="integer_out_of_range")
        return value

    try:
        json.loads(raw, parse_int=exact)
    except (ValueError, RecursionError):  # orjson read it already; the standard library is only a second look
        return


def _too_deep() -> RequestError:
    return RequestError(f"the request body nests deeper than {MAX_DEPTH} levels")


def refuse_unknown_fields(body: dict[str, Any], accepted: frozenset[str], prefix: str = "") -> None:
    """400 naming the first field of ``body`` not in ``accepted`` (``param`` ``prefix + name``).

    For the admin API's bodies, where an ignored field changes what happens: a misspelt
    ``namespace`` in ``/cache/flushall`` flushed every tenant's entries. (The OpenAI API's
    bodies are passed through to the provider, which judges them.) ``code`` is OpenAI's
    ``unknown_parameter``."""
    for name in body:
        if name not in accepted:
            raise RequestError(f"unknown field {prefix + name!r}; accepted: {', '.join(sorted(accepted))}",
                               param=prefix + name, code="unknown_parameter")


def refuse_duplicate_members(raw: bytes) -> None:
    """400 when an object of the JSON document ``raw`` names a member twice (``param`` the member).

    For the admin API's bodies (small): a JSON parser keeps the last of two members, a proxy in
    front may check the first, so ``{"namespace": "a", "namespace": "b"}`` is ambiguous about
    what is flushed or revoked; it is refused, as a repeated credential header is. Parsed a
    second time, by the standard library, only to look (after the bounded parse succeeded)."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for name, _ in items:
            if name in seen:
                raise RequestError(f"the member {name!r} appears more than once; send it once",
                                   param=name, code="duplicate_member")
            seen.add(name)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
