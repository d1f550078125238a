"""Per-request controls: the body's ``cache`` object and the Cache-Control header."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reprise.core.controls import CacheControls, parse_controls
from reprise.core.entry import CacheEntry
from reprise.core.policy import CachePolicy, decide, is_usable
from reprise.errors import RequestError


def test_every_control_parses() -> None:
    c = parse_controls(
        {"ttl": 60, "s-maxage": 10, "no-cache": True, "no-store": True, "namespace": "t1",
         "use-cache": True}
    )
    assert c == CacheControls(ttl=60, s_maxage=10, no_cache=True, no_store=True, namespace="t1",
                              use_cache=True)


def test_underscore_aliases() -> None:
    assert parse_controls({"no_cache": True, "s_maxage": 0}).s_maxage == 0
    # both spellings that agree (or one of them null) are one control
    assert parse_controls({"no-cache": True, "no_cache": True}).no_cache
    assert parse_controls({"s-maxage": 5, "s_maxage": 5.0}).s_maxage == 5
    assert parse_controls({"no-store": True, "no_store": None}).no_store


@pytest.mark.parametrize(
    ("cache", "field"),
    [
        ({"ttl": "abc"}, "cache.ttl"),
        ({"ttl": 0}, "cache.ttl"),
        ({"ttl": -1}, "cache.ttl"),
        ({"ttl": True}, "cache.ttl"),
        ({"s-maxage": -5}, "cache.s-maxage"),
        ({"no-cache": "yes"}, "cache.no-cache"),
        ({"no-store": 1}, "cache.no-store"),
        ({"namespace": "a b"}, "cache.namespace"),
        ({"namespace": "x\r\nSet-Cookie: y"}, "cache.namespace"),
        ({"namespace": ""}, "cache.namespace"),
        ({"use-cache": "true"}, "cache.use-cache"),
        ({"nocache": True}, "cache.nocache"),
        ("ttl=5", "cache"),
        # found from outside: with both spellings the later one silently won
        ({"no-cache": True, "no_cache": False}, "cache.no_cache"),
        ({"s_maxage": 100000, "s-maxage": 0}, "cache.s-maxage"),
        ({"no_store": False, "no-store": True}, "cache.no-store"),
        ({"use-cache": False, "use_cache": True}, "cache.use_cache"),
    ],
)
def test_malformed_controls_name_the_field(cache: object, field: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_controls(cache)
    assert info.value.param == field
    assert type(info.value) is RequestError  # a 400 at the server edge (server/errors.py)


def test_cache_control_header() -> None:
    c = parse_controls(None, "no-cache, no-store, max-age=30, private")
    assert (c.no_cache, c.no_store, c.s_maxage) == (True, True, 30)
    assert parse_controls(None, "s-maxage=5").s_maxage == 5
    with pytest.raises(RequestError):
        parse_controls(None, "max-age=abc")


def test_body_overrides_header() -> None:
    assert parse_controls({"s-maxage": 7}, "max-age=30").s_maxage == 7


def test_plan_default_on_and_off() -> None:
    on = CachePolicy(mode="default_on", ttl=600)
    off = CachePolicy(mode="default_off", ttl=600)
    assert decide(on, CacheControls()).read
    assert not decide(on, CacheControls(use_cache=False)).uses_cache
    assert not decide(off, CacheControls()).uses_cache
    plan = decide(off, CacheControls(use_cache=True, ttl=5, namespace="n"))
    assert (plan.read, plan.store, plan.ttl, plan.namespace) == (True, True, 5, "n")
    assert not decide(on, CacheControls(no_cache=True)).read
    assert decide(on, CacheControls(no_cache=True)).store
    assert not decide(on, CacheControls(no_store=True)).store
    assert decide(CachePolicy(namespace="g"), CacheControls()).namespace == "g"


def test_freshness_and_s_maxage() -> None:
    entry = CacheEntry(body=b"x", created_at=100.0, expires_at=160.0)
    assert is_usable(entry, 150.0, None)
    assert not is_usable(entry, 160.0, None)
    assert is_usable(entry, 110.0, 10)
    assert not is_usable(entry, 111.0, 10)
    assert is_usable(CacheEntry(body=b"x", created_at=0.0), 1e9, None)


@given(st.text(max_size=60))
def test_header_parser_never_crashes_unexpectedly(text: str) -> None:
    try:
        parse_controls(None, text)
    except RequestError as exc:
        assert exc.param == "Cache-Control"
