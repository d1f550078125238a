"""What only the in-process store promises: its bounds, LRU order and clock."""

from __future__ import annotations

from reprise.backends.memory import SWEEP_INTERVAL, MemoryBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_evicts_least_recently_used_by_count() -> None:
    store = MemoryBackend(max_entries=3)
    for key in ("a", "b", "c"):
        await store.set(key, b"v", None)
    assert await store.get("a") == b"v"  # a is now the most recent
    await store.set("d", b"v", None)
    assert await store.get_many(["a", "b", "c", "d"]) == [b"v", None, b"v", b"v"]
    assert len(store) == 3
    assert store.evictions == 1


async def test_evicts_least_recently_used_by_bytes() -> None:
    store = MemoryBackend(max_bytes=100)
    await store.set("a", b"x" * 40, None)
    await store.set("b", b"x" * 40, None)
    await store.get("a")
    await store.set("c", b"x" * 40, None)
    assert await store.get("b") is None
    assert await store.get("a") is not None and await store.get("c") is not None
    assert store.size_bytes == 80


async def test_oversize_value_is_not_stored_and_drops_the_stale_one() -> None:
    store = MemoryBackend(max_bytes=100)
    await store.set("keep", b"x" * 50, None)
    await store.set("big", b"old", None)
    await store.set("big", b"x" * 101, None)
    assert await store.get("big") is None
    assert await store.get("keep") == b"x" * 50
    assert store.size_bytes == 50
    await store.set("exact", b"x" * 100, None)  # fits exactly, pushing the rest out
    assert await store.get("exact") == b"x" * 100
    assert len(store) == 1


async def test_size_accounting_follows_overwrite_and_delete() -> None:
    store = MemoryBackend()
    await store.set("k", b"x" * 10, None)
    await store.set("k", b"x" * 30, None)
    assert store.size_bytes == 30
    await store.delete("k")
    assert store.size_bytes == 0 and len(store) == 0


async def test_expiry_follows_the_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryBackend(clock=clock)
    await store.set("k", b"v", 10)
    clock.now += 9.9
    assert await store.get("k") == b"v"
    clock.now += 0.1
    assert await store.get("k") is None
    assert len(store) == 0  # removed when found expired


async def test_write_sweeps_expired_entries_periodically() -> None:
    clock = FakeClock()
    store = MemoryBackend(clock=clock)
    for i in range(5):
        await store.set(f"old{i}", b"v", 1)
    clock.now += 2  # expired, but the last sweep was too recent
    await store.set("new", b"v", None)
    assert len(store) == 6
    clock.now += SWEEP_INTERVAL
    await store.set("newer", b"v", None)
    assert len(store) == 2
    assert store.size_bytes == 2


async def test_aclose_frees_everything() -> None:
    store = MemoryBackend()
    await store.set("k", b"v", None)
    await store.aclose()
    assert len(store) == 0 and store.size_bytes == 0


async def test_bounded_by_bytes_only_by_default() -> None:
    """No entry-count bound unless configured: 20,000 small answers that fit the bytes all stay (issue 15)."""
    store = MemoryBackend(max_bytes=20_000 * 100)
    assert store.max_entries is None
    for i in range(20_000):
        await store.set(f"k{i}", b"x" * 100, None)
    assert len(store) == 20_000 and store.evictions == 0
    await store.set("one-more", b"x" * 100, None)
    assert len(store) == 20_000 and store.evictions == 1 and await store.get("k0") is None


class Decoded:
    """A decoded form a test can watch die (weak references)."""

    def __init__(self, value: bytes) -> None:
        self.value = value


async def test_a_value_is_decoded_once_and_its_decoded_form_goes_with_it() -> None:
    import gc
    import weakref

    store = MemoryBackend(max_entries=2)
    calls: list[bytes] = []

    def decode(value: bytes) -> Decoded:
        calls.append(value)
        return Decoded(value)

    await store.set("a", b"one", None)
    first = store.get_decoded("a", decode)
    assert isinstance(first, Decoded) and store.get_decoded("a", decode) is first
    assert calls == [b"one"]  # read twice, decoded once
    await store.set("a", b"two", None)  # a new value is decoded anew
    second = store.get_decoded("a", decode)
    assert isinstance(second, Decoded) and second.value == b"two" and calls == [b"one", b"two"]
    assert store.get_decoded("missing", decode) is None

    watched = weakref.ref(second)
    del first, second
    await store.set("b", b"x", None)
    await store.set("c", b"y", None)  # evicts "a" (max_entries=2): its decoded form must not stay behind
    gc.collect()
    assert store.get_decoded("a", decode) is None and watched() is None

    store.get_decoded("b", decode)
    watched = weakref.ref(store.get_decoded("b", decode))  # type: ignore[arg-type]
    assert await store.delete("b")
    gc.collect()
    assert watched() is None


async def test_expired_values_are_not_decoded() -> None:
    clock = FakeClock()
    store = MemoryBackend(clock=clock)
    await store.set("a", b"v", 10)
    clock.now += 11
    assert store.get_decoded("a", Decoded) is None and len(store) == 0


async def test_a_tenant_flooding_the_store_evicts_its_own_entries_first() -> None:
    """Found from outside: one tenant's flood pushed out another tenant's few entries (plain LRU)."""
    store = MemoryBackend(max_bytes=1000)
    for i in range(5):
        await store.set(f"team-a/default:{i}", b"a" * 50, None)  # 250 bytes, written first
    for i in range(100):
        await store.set(f"team-b/default:{i}", b"b" * 50, None)  # 5,000 bytes through a 1,000 byte store
    assert await store.get_many([f"team-a/default:{i}" for i in range(5)]) == [b"a" * 50] * 5
    assert store.size_bytes <= 1000
    assert await store.get("team-b/default:99") == b"b" * 50  # the flood keeps its own most recent


async def test_owners_above_their_share_are_evicted_least_recently_used_first() -> None:
    store = MemoryBackend(max_bytes=400)
    await store.set("team-b/x:1", b"b" * 100, None)  # the least recently used, but team-b is within its share
    await store.set("team-a/x:old", b"a" * 100, None)
    await store.set("team-a/x:new", b"a" * 100, None)
    await store.set("shared:1", b"s" * 100, None)
    await store.set("team-a/x:newest", b"a" * 100, None)  # team-a holds 300 of 400, share 133
    assert await store.get("team-a/x:old") is None
    assert await store.get_many(["team-b/x:1", "team-a/x:new", "shared:1", "team-a/x:newest"]) == [
        b"b" * 100, b"a" * 100, b"s" * 100, b"a" * 100]


async def test_one_owner_is_plain_lru_and_the_accounting_returns_to_zero() -> None:
    store = MemoryBackend(max_bytes=100)
    for key in ("a", "b", "c"):
        await store.set(key, b"x" * 40, None)
    assert await store.get("a") is None and len(store) == 2
    await store.clear()
    await store.set("t/ns:k", b"x" * 10, None)
    await store.delete("t/ns:k")
    assert store.size_bytes == 0 and store._owned == {}


async def test_the_entry_bound_is_shared_by_owners_too() -> None:
    """Found from outside: at the entry bound, with every owner within its byte share, each write
    walked (and reordered) the whole store; the share of the bound exceeded is what counts."""
    store = MemoryBackend(max_entries=10)
    for i in range(3):
        await store.set(f"team-a/x:{i}", b"a", None)
    for i in range(50):
        await store.set(f"team-b/x:{i}", b"b", None)
    assert len(store) == 10
    assert await store.get_many([f"team-a/x:{i}" for i in range(3)]) == [b"a"] * 3
    assert store._counts == {"team-a": 3, "team-b": 7}


async def test_a_flood_of_a_shared_namespace_leaves_the_operators_entries() -> None:
    """Found from outside: keys without a tenant were one owner, so a tenant flooding a shared
    namespace evicted the master key's entries."""
    store = MemoryBackend(max_bytes=1000)
    for i in range(5):
        await store.set(f"plainhash{i}", b"o" * 50, None)  # the operator's, no namespace
        await store.set(f"docs:{i}", b"d" * 50, None)  # the operator's "docs" namespace
    for i in range(100):
        await store.set(f"common:{i}", b"c" * 50, None)  # a shared namespace, flooded
    assert await store.get_many([f"plainhash{i}" for i in range(5)]) == [b"o" * 50] * 5
    assert await store.get_many([f"docs:{i}" for i in range(5)]) == [b"d" * 50] * 5
