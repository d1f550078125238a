"""The driver's memo of decoded entries never hides what the store says now.

A read still asks the store every time; only the decoding of the very ``bytes`` object the
store returned before is skipped. So an overwrite, a delete, an expiry and ``s-maxage``
are seen exactly as without the memo.
"""

from __future__ import annotations

from reprise.backends.memory import MemoryBackend
from reprise.store_access import StoreAccess


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_memoised_entry_follows_overwrites_deletes_expiry_and_max_age() -> None:
    clock = Clock()
    store = StoreAccess(MemoryBackend(clock=clock), clock=clock)
    await store.write("k", store.make_entry(b"one", 60, {"usage": {"prompt_tokens": 1}}))
    first = await store.read("k")
    again = await store.read("k")
    assert first is not None and again is first  # the same stored bytes: decoded once
    assert first.body == b"one" and first.meta == {"usage": {"prompt_tokens": 1}}

    await store.write("k", store.make_entry(b"two", 60, {}))
    second = await store.read("k")
    assert second is not None and second.body == b"two"

    clock.now += 10
    assert await store.read("k", max_age=5) is None  # too old for this request
    assert await store.read("k", max_age=20) is second

    clock.now += 100  # past the entry's expiry
    assert await store.read("k") is None

    await store.write("k", store.make_entry(b"three", None, {}))
    assert (await store.read("k")).body == b"three"  # type: ignore[union-attr]
    await store.delete("k")
    assert await store.read("k") is None


async def test_the_memo_is_bounded() -> None:
    store = StoreAccess(MemoryBackend())
    for i in range(3000):
        await store.write(f"k{i}", store.make_entry(b"x" * 100, None, {}))
        assert await store.read(f"k{i}") is not None
    assert len(store._decoded) <= 1024


async def test_a_large_entry_is_read_as_a_view_of_the_stored_bytes() -> None:
    """Too large for the memo (decoded at every read), and still never copied: its body is
    a view of the very bytes the store holds, which a hit sends as they are."""
    backend = MemoryBackend()
    store = StoreAccess(backend)
    body = b'{"answer": "' + b"x" * 200_000 + b'"}'
    await store.write("k", store.make_entry(body, None, {"kind": "chat"}))
    entry = await store.read("k")
    assert entry is not None and entry.body == body
    assert isinstance(entry.body, memoryview) and entry.body.obj is await backend.get("k")
