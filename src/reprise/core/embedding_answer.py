"""An embeddings answer cut into one entry per input item, and put back together.

``/embeddings`` caches each input item on its own (a batch asks the provider only for
the items not cached), so one answer the client gets may be made of items stored from
several provider answers. The provider's fields live at three levels, and each is kept
where it belongs:

* **the item** (``object``, ``embedding``, anything else the provider put beside them):
  in that item's entry, every field but ``index``, which is the item's place in *this*
  request and is written again when the answer is assembled;
* **the answer** (every top-level field but ``data``: ``object``, ``model``, ``id``,
  ``usage``, vendor extras): a copy in the entry of each item of that answer, since the
  answer itself has no key of its own;
* **the answer the client gets**: its top-level fields are those the answers its items
  came from agree on: every field of that answer when all items come from one provider
  answer (a miss, or a hit on items stored together), and when they come from several
  (a partly cached batch, hits stored by different calls) only the fields present in
  all of them with the same value. ``object`` (``"list"``) and ``model`` (the requested
  model name) are filled in when no value is agreed. ``usage`` is the provider call this
  request made, as the provider sent it; with no call (every item from the cache or from
  another request's call) its ``prompt_tokens`` and ``total_tokens`` are 0 and its other
  fields are those the stored answers' ``usage`` agree on.

Stored value of an item::

    answer JSON | b"\\n" | item JSON

orjson never writes a raw newline, so the first one splits the two. Entries written
before the answer was kept hold only the vector's JSON (a list, or a base64 string):
they are still served, as an item ``{"object": "embedding", "embedding": ...}`` from an
answer with no fields (so a batch with one of them agrees on no top-level field).

An all-hit answer costs, per item, one search for the newline and a slice; the answer
parts are parsed once per distinct one (usually one), never the vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

#: The most bytes of one answer's top-level fields (all but ``data``) kept with its items.
#: They are copied into every item's entry, so a provider's oversized fields would multiply
#: by the number of items (up to 2,048): past this the answer is sent but not stored.
MAX_ANSWER_FIELDS_BYTES = 16 * 1024
NO_USAGE = b'{"prompt_tokens":0,"total_tokens":0}'
_TOKEN_FIELDS = ("prompt_tokens", "total_tokens")


def answer_fields(reply: dict[str, Any]) -> bytes:
    """The JSON of an answer's own fields: every top-level field but ``data``."""
    return orjson.dumps({k: v for k, v in reply.items() if k != "data"})


def item_value(fields: bytes, item: dict[str, Any], vector: bytes) -> bytes:
    """The stored value of one item: its answer's ``fields`` and the item without ``index``.

    ``vector`` is the JSON of the item's ``embedding``, already made (and checked) by the
    caller, so the vector is serialised once. ``object`` is set to ``"embedding"`` when the
    provider left it out, as OpenAI's clients expect it.
    """
    rest = {k: v for k, v in item.items() if k != "index" and k != "embedding"}
    if "object" not in rest:
        rest = {"object": "embedding", **rest}
    return b"%s\n%s,\"embedding\":%s}" % (fields, orjson.dumps(rest)[:-1], vector)


def stored_vector(value: bytes) -> bytes:
    """The JSON of the ``embedding`` in a stored item value (either format)."""
    if value[:1] != b"{":
        return value
    return orjson.dumps(orjson.loads(value[value.index(b"\n") + 1:])["embedding"])


def assemble(model: str, values: Sequence[bytes], usage: bytes | None) -> bytes:
    """The client's answer from its items' stored values, in request order.

    ``usage`` is the provider's ``usage`` of the call this request made, or None when it
    made none (then the stored answers' ``usage`` with no tokens counted).
    """
    parts: list[bytes | memoryview] = []
    fields: list[bytes] = []
    for i, value in enumerate(values):
        parts.append(b'{"index":%d,' % i if i == 0 else b',{"index":%d,' % i)
        if value[:1] == b"{":
            cut = value.index(b"\n")
            fields.append(value[:cut])
            parts.append(memoryview(value)[cut + 2:])  # the item without its opening brace
        else:  # an entry from before the answer was kept
            fields.append(b"")
            parts.append(b'"object":"embedding","embedding":%s}' % value)
    top, stored_usage = _agreed(fields)
    top.setdefault("object", "list")
    top.setdefault("model", model)
    head = orjson.dumps(top)[:-1] + b',"data":['
    return b"".join((head, *parts, b'],"usage":', usage or _no_call_usage(stored_usage), b"}"))


def _agreed(fields: list[bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level fields (without ``data`` and ``usage``) and the ``usage`` fields that
    every answer in ``fields`` has with the same value."""
    answers = [_loads_object(raw) for raw in dict.fromkeys(fields)]
    usages = [u if isinstance(u := answer.pop("usage", None), dict) else {} for answer in answers]
    return _common(answers), _common(usages)


def _common(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    common = dicts[0]
    for other in dicts[1:]:
        common = {k: v for k, v in common.items() if k in other and other[k] == v}
    return common


def _loads_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    loaded = orjson.loads(raw)
    return {k: v for k, v in loaded.items() if k != "data"} if isinstance(loaded, dict) else {}


def _no_call_usage(stored: dict[str, Any]) -> bytes:
    if not stored:
        return NO_USAGE
    return orjson.dumps({**stored, **dict.fromkeys(_TOKEN_FIELDS, 0)})
