"""RefreshingToken (server/credentials.py): fetched on first use, reused, replaced before it
expires, one fetch for concurrent callers, failures reported without the details."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reprise.errors import UpstreamError
from reprise.server.credentials import RefreshingToken, read_google_credentials


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_reused_until_shortly_before_expiry_then_refetched() -> None:
    clock, fetched = Clock(), []

    async def fetch() -> tuple[str, float]:
        fetched.append(clock.now)
        return f"t{len(fetched)}", clock.now + 3600

    tokens = RefreshingToken(fetch, "model 'm'", clock)
    assert await tokens.token() == "t1"
    clock.now += 3600 - 301  # more than the five-minute margin left: the same token
    assert await tokens.token() == "t1"
    clock.now += 2  # under five minutes left: a new one, before the old one lapses
    assert await tokens.token() == "t2"
    assert len(fetched) == 2


async def test_a_short_lived_token_is_replaced_at_half_its_life() -> None:
    clock, count = Clock(), [0]

    async def fetch() -> tuple[str, float]:
        count[0] += 1
        return f"t{count[0]}", clock.now + 60

    tokens = RefreshingToken(fetch, "m", clock)
    await tokens.token()
    clock.now += 29
    assert await tokens.token() == "t1"
    clock.now += 2
    assert await tokens.token() == "t2"


async def test_concurrent_callers_share_one_fetch() -> None:
    release, count = asyncio.Event(), [0]

    async def fetch() -> tuple[str, float]:
        count[0] += 1
        await release.wait()
        return "shared", 10**10

    tokens = RefreshingToken(fetch, "m")
    waiting = [asyncio.ensure_future(tokens.token()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == ["shared"] * 5
    assert count[0] == 1


async def test_a_failed_fetch_is_an_upstream_error_without_its_details_and_is_retried() -> None:
    calls = [0]

    async def fetch() -> tuple[str, float]:
        calls[0] += 1
        raise RuntimeError("secret=hunter2 at https://login.example")

    tokens = RefreshingToken(fetch, "model 'm'")
    for _ in range(2):
        with pytest.raises(UpstreamError) as caught:
            await tokens.token()
        assert str(caught.value) == "model 'm': could not get an access token (RuntimeError)"
    assert calls[0] == 2


def test_google_credentials_json_path_or_mapping(tmp_path: Path) -> None:
    info = {"type": "service_account", "project_id": "p"}
    path = tmp_path / "sa.json"
    path.write_text('{"type": "service_account", "project_id": "p"}')
    assert read_google_credentials(str(path)) == read_google_credentials(path.read_text()) == info
    assert read_google_credentials(info) is info
    for bad, why in (("/nowhere.json", "neither JSON nor the path"), ("{not json", "not valid JSON"),
                     ('{"project_id": "p"}', "no \"type\"")):
        with pytest.raises(ValueError, match=why):
            read_google_credentials(bad)
