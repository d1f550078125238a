"""One JSON parse per body, bounded nesting without a second parse (issue 12 item 6).

Found: an 8 MB body of brackets was parsed twice on the event loop (the standard library's
parser to probe its depth, then orjson) and blocked it for 4.3 s.
"""

from __future__ import annotations

import gc

import orjson
import pytest

from reprise.core.body import MAX_DEPTH, parse_json_object
from reprise.errors import RequestError


def nested(depth: int) -> bytes:
    return b'{"model":"m","x":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, 10])
def test_nesting_up_to_the_bound_is_read(depth: int) -> None:
    assert parse_json_object(nested(depth))["model"] == "m"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 1_025, 4_000_000])
def test_deeper_nesting_is_a_400_naming_the_bound(depth: int) -> None:
    with pytest.raises(RequestError, match=f"deeper than {MAX_DEPTH} levels"):
        parse_json_object(nested(depth))


@pytest.mark.parametrize(("raw", "message"), [
    (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b'{"a": ', "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_other_bodies_are_400s(raw: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_json_object(raw)


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = "[" * 10_000 + "{" * 10_000
    body = b'{"messages":[{"role":"user","content":"' + text.encode() + b'"}]}'
    assert parse_json_object(body)["messages"][0]["content"] == text


@pytest.mark.parametrize("raw", [b'{"x":[' + b"[]," * 100_000 + b"[]]}", b'{"x":' + b"[" * 2_000 + b"}"])
def test_the_garbage_collector_is_on_again_after_a_large_body(raw: bytes) -> None:
    assert gc.isenabled()
    try:
        parse_json_object(raw)
    except RequestError:
        pass
    assert gc.isenabled()


def test_values_are_counted_outside_strings() -> None:
    from reprise.core.body import count_values

    # the outer object and its 2 members, 2 arrays and an object; 2 scalars in the first array
    assert count_values(b'{"a":[[],{},1,2],"b":"[[[{{{,,::"}') == (6, 2)
    assert count_values(b'{"a":') == (-1, -1)


@pytest.mark.parametrize("number", [b"18446744073709551616", b"-9223372036854775809",
                                    b"10000000000000000000000001", b"123456789012345678901234567890"])
def test_integers_beyond_64_bits_are_a_400(number: bytes) -> None:
    """Found from outside: orjson read them as floats, so 10**25 and 10**25 + 1 shared a key and the
    provider got 1e+25 where the client sent an integer."""
    with pytest.raises(RequestError) as caught:
        parse_json_object(b'{"model":"m","x_vendor":{"id":%s}}' % number)
    assert caught.value.code == "integer_out_of_range"
    assert number.decode()[:40] in caught.value.message


@pytest.mark.parametrize("number", [b"18446744073709551615", b"-9223372036854775808", b"9223372036854775807",
                                    b"1234567890123456789.5", b"1e25"])
def test_integers_within_64_bits_and_floats_are_read_exactly(number: bytes) -> None:
    body = parse_json_object(b'{"model":"m","seed":%s}' % number)
    assert body["seed"] == orjson.loads(number)
    if b"." not in number and b"e" not in number:
        assert body["seed"] == int(number)


def test_long_digit_runs_inside_strings_are_not_integers() -> None:
    digits = "1" * 500
    body = parse_json_object(b'{"model":"m","messages":[{"role":"user","content":"%s"}]}' % digits.encode())
    assert body["messages"][0]["content"] == digits
