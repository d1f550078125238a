"""A request body's bytes → one JSON object, with bounded cost.

One parse per body, by orjson (>= 3.9 stops at 1,024 levels of nesting by itself, fast,
where older versions overflowed the C stack). orjson *writes* at most 255 levels, and a
body must be written again to be hashed into a key and sent upstream, so 256–1,024
levels are refused here too: a C-speed count of brackets finds the only bodies that can
nest that deep, and only those are written once to check (no second parse).

What a parse costs is the number of arrays and objects it makes, not the bytes: 8 MB of
text parses in ~10 ms, 8 MB of ``[],`` (2.7M lists) in ~0.5 s with their freeing, and orjson
holds the GIL throughout, so a worker thread would block the event loop just as long
(measured: 1.04 s inline, 1.20 s in a thread). Hence :data:`MAX_CONTAINERS`. A C-speed
count of ``[`` and ``{`` bounds the containers from above; a body under
:data:`SUSPECT_BRACKETS` is parsed at once. Above it the brackets may sit inside strings
(a pasted program, minified JSON in a prompt), so :func:`count_containers` counts the
real ones *in another process* (server/body_parser.py) before this one parses anything.
The cyclic garbage collector, which millions of small containers set off thousands of
times mid-parse, is paused while a large body is parsed.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson

from reprise.errors import RequestError

MAX_DEPTH = 255
"""Levels of nesting a body may have: as deep as orjson can write back."""
MAX_CONTAINERS = 250_000
"""Arrays and objects a body may hold (~40 ms to parse and free). A chat request with a thousand
messages of a few parts each uses a few thousand; 2,048 embedding inputs of token ids, 2,049."""
SUSPECT_BRACKETS = 20_000
"""Bodies with more ``[``/``{`` bytes than this have their real containers counted off the event loop."""
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
    return body


def is_suspect(raw: bytes) -> bool:
    """Whether ``raw`` may hold more containers than is cheap to parse here (C-speed, ~1 ms/MB)."""
    return raw.count(b"[") + raw.count(b"{") > SUSPECT_BRACKETS


def count_containers(raw: bytes) -> int:
    """The arrays and objects in ``raw`` (-1 if it is not JSON: the parse that follows says why).

    Run in a helper process: it costs what parsing the body costs, which is the point.
    """
    gc.disable()  # a throwaway process: nothing to collect
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return -1
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            count += 1
            pending.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            count += 1
            pending.extend(v for v in item if isinstance(v, (dict, list)))
        if count > MAX_CONTAINERS:
            break
    return count


def too_many_containers() -> RequestError:
    return RequestError(f"the request body holds more than {MAX_CONTAINERS} JSON arrays and objects",
                        code="body_too_complex")


def _too_deep() -> RequestError:
    return RequestError(f"the request body nests deeper than {MAX_DEPTH} levels")
