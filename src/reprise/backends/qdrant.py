"""``type: qdrant-semantic``: answers and prompt vectors in Qdrant, through ``qdrant-client``.

One client (a Qdrant server at ``qdrant_api_base``, or embedded with ``qdrant_path`` /
``":memory:"``, qdrant-client's local mode) serves two collections:

* ``{qdrant_collection_name}``: one point per remembered prompt; payload ``scope``
  (keyword-indexed, the hard filter of every search), ``key`` (the exact key of the
  answer), ``prompt``, ``expires_at`` (epoch seconds; absent: no expiry) and
  ``written_at``; cosine distance, optional quantization.
* ``{qdrant_collection_name}_exact``: the exact entries (the answer bytes), one point
  per key with a 1-dimensional placeholder vector, so a Qdrant deployment needs no
  other store; ``expires_at`` as above, from the write's ``ttl``. Freshness is still
  decided by the core from the entry bytes.

Expiry (found from outside: expired points were never removed, so expired near-repeats
took the ``k`` slots of a search and hid a live answer, and both collections grew without
bound). A search filters out points whose ``expires_at`` has passed inside Qdrant
(``must_not`` a range on the payload), so an expired point never takes a top-``k`` slot.
Expired points of both collections are deleted by a sweep (a scroll of at most
:data:`SWEEP_BATCH` expired ids per collection, then a delete of those ids), run from a
write once per :data:`SWEEP_EVERY` writes or :data:`SWEEP_INTERVAL` seconds, whichever
comes first, one at a time, in a task of its own: the write that starts it does not wait
for it (a sweep of an embedded ``qdrant_path`` index took 0.16-0.76 s). A failed sweep is
logged and counted (:class:`SweepStats`), never raised. Points written
before ``expires_at`` was (older versions) have none: they never expire here.

Bound: each point also carries ``written_at``; past ``max_vectors`` points in a collection
the same sweep evicts the oldest writes (those without ``written_at`` first), at most twice
:data:`SWEEP_BATCH` a sweep. No per-scope bound.

Point ids are uuid5 of the key (and scope), so writes are idempotent. Every SDK or
transport failure becomes :class:`BackendUnavailable`; the drivers fail open.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from qdrant_client import AsyncQdrantClient, models

from reprise.backends.base import Backend, Capabilities, namespace_of
from reprise.backends.registry import VectorStoreMaker
from reprise.backends.vector import Vector, VectorHit, VectorRecord, VectorStore
from reprise.errors import BackendUnavailable

if TYPE_CHECKING:
    from reprise.config.models import QdrantSemanticCacheParams

log = logging.getLogger(__name__)

SWEEP_EVERY = 32
"""Writes (answers and vectors together) after which expired points are swept."""
SWEEP_INTERVAL = 60.0
"""Seconds after which the next write sweeps, however few writes there were."""
SWEEP_BATCH = 32
"""Expired points a sweep deletes at most, per collection: twice what :data:`SWEEP_EVERY`
writes add, so a backlog drains, in small steps (qdrant-client's local mode with a
``qdrant_path`` commits each deletion on its own, blocking the event loop: 0.2 to 5.5 s
for 256 on a loaded 2-core machine)."""
EXPIRES = "expires_at"
"""The payload field holding a point's expiry (epoch seconds), in both collections."""
WRITTEN = "written_at"
"""The payload field holding when a point was last written (epoch seconds): eviction order."""

_NS = uuid.UUID("6f1c6c52-8a57-4d38-9d5c-2f0b9b1f4a61")
Quantization = models.ScalarQuantization | models.ProductQuantization | models.BinaryQuantization
_QUANTIZATION: dict[str, Quantization] = {
    "binary": models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True)),
    "scalar": models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8)),
    "product": models.ProductQuantization(product=models.ProductQuantizationConfig(
        compression=models.CompressionRatio.X16)),
}


def point_id(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "\0".join(parts)))


def expired(now: float) -> models.FieldCondition:
    """The condition of a point expired at ``now`` (a point without ``expires_at`` never is)."""
    return models.FieldCondition(key=EXPIRES, range=models.Range(lte=now))


@dataclass(slots=True)
class SweepStats:
    """What the expiry sweeps did in this process (the sweeps' only record besides the log)."""

    sweeps: int = 0
    removed: int = 0
    """Expired points deleted, both collections."""
    failures: int = 0
    evicted: int = 0
    """Points deleted, oldest writes first, to keep a collection within ``max_vectors``."""


class QdrantConnection:
    """The shared client, created on first use; collections created if missing."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.collection: str = params.qdrant_collection_name
        self.exact_collection = f"{self.collection}_exact"
        self._client: AsyncQdrantClient | None = None
        self._ready: set[str] = set()
        self._lock = asyncio.Lock()
        self.sweep_every = SWEEP_EVERY
        self.sweep_interval = SWEEP_INTERVAL
        self.sweep_batch = SWEEP_BATCH
        self.max_points: int = params.max_vectors
        self._evicting: set[str] = set()
        self.sweep_stats = SweepStats()
        self._writes = 0
        self._sweep_after = 0.0  # monotonic: the first write of a process sweeps what others left
        self._sweeping: asyncio.Task[int] | None = None

    def _make_client(self) -> AsyncQdrantClient:
        p = self.params
        if p.qdrant_api_base:
            key = p.qdrant_api_key.get_secret_value() if p.qdrant_api_key else None
            return AsyncQdrantClient(url=p.qdrant_api_base, api_key=key, timeout=2, check_compatibility=False)
        if p.qdrant_path in (None, ":memory:"):
            return AsyncQdrantClient(location=":memory:")
        return AsyncQdrantClient(path=p.qdrant_path)

    async def client(self, collection: str, dim: int) -> AsyncQdrantClient:
        if collection in self._ready and self._client is not None:
            return self._client
        async with self._lock:
            try:
                if self._client is None:
                    self._client = self._make_client()
                if not await self._client.collection_exists(collection):
                    await self._create(self._client, collection, dim)
                elif self.params.qdrant_api_base:
                    await self._index_upkeep(self._client, collection)
            except Exception as exc:  # the SDK raises many types (httpx, grpc, its own)
                raise BackendUnavailable(f"qdrant: {exc}") from exc
            self._ready.add(collection)
            return self._client

    async def _create(self, client: AsyncQdrantClient, collection: str, dim: int) -> None:
        quantization: Quantization | None = None
        if collection == self.collection and self.params.qdrant_quantization_config:
            quantization = _QUANTIZATION[self.params.qdrant_quantization_config]
        await client.create_collection(
            collection,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            quantization_config=quantization,
        )
        if self.params.qdrant_api_base:  # a server indexes the filter fields; local mode cannot
            field = "scope" if collection == self.collection else "ns"
            await client.create_payload_index(collection, field, models.PayloadSchemaType.KEYWORD)
            await self._index_upkeep(client, collection)

    async def _index_upkeep(self, client: AsyncQdrantClient, collection: str) -> None:
        """Index ``expires_at`` and ``written_at`` (also in a collection made before they were
        written; idempotent on a server). Without them the expiry filter scans the payloads and
        eviction (``order_by``) fails: counted as a failed sweep, so only logged here."""
        for field in (EXPIRES, WRITTEN):
            try:
                await client.create_payload_index(collection, field, models.PayloadSchemaType.FLOAT)
            except Exception as exc:  # the SDK raises many types (httpx, grpc, its own)
                log.warning("qdrant: could not index %r of %r: %s", field, collection, exc)

    async def wrote(self) -> None:
        """Count one write; start a sweep of expired points when due (not waited for; see :meth:`sweep`)."""
        self._writes += 1
        if self._sweeping is not None or (self._writes < self.sweep_every and time.monotonic() < self._sweep_after):
            return
        self._writes = 0
        self._sweep_after = time.monotonic() + self.sweep_interval
        self._sweeping = asyncio.ensure_future(self.sweep(time.time()))
        self._sweeping.add_done_callback(self._swept)

    def _swept(self, task: asyncio.Task[int]) -> None:
        self._sweeping = None
        if not task.cancelled() and task.exception() is not None:  # sweep() logs its own faults
            log.warning("qdrant: expiry sweep stopped: %s", task.exception())

    async def settled(self) -> None:
        """Wait for the sweep in progress, if any (for tests and for a tidy close)."""
        if self._sweeping is not None:
            await asyncio.shield(self._sweeping)

    async def sweep(self, now: float) -> int:
        """Delete up to ``sweep_batch`` (:data:`SWEEP_BATCH`) points of each collection expired at
        ``now``, then evict the oldest writes past ``max_points``; the number expired and deleted.
        Bounded so that one write never pays for a backlog (after a restart, say): a sweep can
        remove twice what the writes between two sweeps add, so a backlog drains.

        Fails open: a Qdrant fault is logged and counted in :attr:`sweep_stats`, never raised;
        that collection's points stay until a later sweep, and searches skip expired ones."""
        client = self._client
        if client is None:
            return 0
        self.sweep_stats.sweeps += 1
        removed = 0
        for collection in sorted(self._ready):
            try:
                removed += await self._expire(client, collection, now)
                await self._bound(client, collection)
            except Exception as exc:  # the SDK raises many types (httpx, grpc, its own)
                self.sweep_stats.failures += 1
                log.warning("qdrant: expiry sweep of %r failed (expired points stay until a later "
                            "sweep; searches skip them): %s", collection, exc)
        return removed

    async def _expire(self, client: AsyncQdrantClient, collection: str, now: float) -> int:
        found, _ = await client.scroll(collection, models.Filter(must=[expired(now)]), limit=self.sweep_batch,
                                       with_payload=False, with_vectors=False)
        if found:
            await client.delete(collection, models.PointIdsList(points=[p.id for p in found]))
        self.sweep_stats.removed += len(found)
        return len(found)

    async def _bound(self, client: AsyncQdrantClient, collection: str) -> None:
        """Evict the oldest writes past ``max_points``, at most twice ``sweep_batch`` a sweep;
        points written before ``written_at`` was stored (older versions) go first."""
        excess = (await client.count(collection, exact=False)).count - self.max_points
        if excess <= 0:
            self._evicting.discard(collection)
            return
        wanted = min(excess, 2 * self.sweep_batch)
        unstamped = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=WRITTEN))])
        found, _ = await client.scroll(collection, unstamped, limit=wanted, with_payload=False, with_vectors=False)
        ids = [p.id for p in found]
        if len(ids) < wanted:
            oldest, _ = await client.scroll(collection, limit=wanted - len(ids), order_by=models.OrderBy(key=WRITTEN),
                                            with_payload=False, with_vectors=False)
            ids += [p.id for p in oldest]
        if ids:
            await client.delete(collection, models.PointIdsList(points=ids))
        self.sweep_stats.evicted += len(ids)
        if collection not in self._evicting:
            self._evicting.add(collection)
            log.warning("qdrant: %r holds more than max_vectors (%d) points: evicting the oldest writes "
                        "(logged once until it is back under)", collection, self.max_points)

    async def aclose(self) -> None:
        await self.settled()  # a sweep in flight uses the client
        client, self._client = self._client, None
        self._ready.clear()
        if client is not None:
            await client.close()


class QdrantExactStore:
    """The exact :class:`Backend` half: entry bytes as base64 payload."""

    name = "qdrant"
    capabilities = Capabilities(native_ttl=False, shared=True, persistent=True)

    def __init__(self, connection: QdrantConnection) -> None:
        self.connection = connection

    async def _client(self) -> AsyncQdrantClient:
        return await self.connection.client(self.connection.exact_collection, 1)

    async def get(self, key: str) -> bytes | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        client = await self._client()
        try:
            points = await client.retrieve(self.connection.exact_collection, [point_id(k) for k in keys])
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        found = {p.payload["key"]: base64.b64decode(p.payload["value"]) for p in points if p.payload}
        return [found.get(k) for k in keys]

    async def set(self, key: str, value: bytes, ttl: float | None) -> None:
        client = await self._client()
        payload: dict[str, Any] = {"key": key, "ns": namespace_of(key) or "",
                                   "value": base64.b64encode(value).decode()}
        now = time.time()
        payload[WRITTEN] = now
        if ttl is not None:
            payload[EXPIRES] = now + ttl
        point = models.PointStruct(id=point_id(key), vector=[1.0], payload=payload)
        try:
            await client.upsert(self.connection.exact_collection, [point])
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        await self.connection.wrote()

    async def delete(self, key: str) -> bool:
        existed = await self.get(key) is not None
        client = await self._client()
        try:
            await client.delete(self.connection.exact_collection, models.PointIdsList(points=[point_id(key)]))
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        return existed

    async def clear(self, namespace: str | None = None) -> int:
        keys = [key async for key in self.keys(namespace)]
        for key in keys:
            await self.delete(key)
        return len(keys)

    async def keys(self, namespace: str | None = None) -> AsyncIterator[str]:
        client = await self._client()
        flt = None
        if namespace is not None:
            flt = models.Filter(must=[models.FieldCondition(key="ns", match=models.MatchValue(value=namespace))])
        offset: Any = None
        while True:
            try:
                points, offset = await client.scroll(self.connection.exact_collection, flt, limit=256,
                                                     offset=offset, with_payload=["key"])
            except Exception as exc:
                raise BackendUnavailable(f"qdrant: {exc}") from exc
            for p in points:
                if p.payload:
                    yield p.payload["key"]
            if offset is None:
                return

    async def aclose(self) -> None:
        await self.connection.aclose()


class QdrantVectorStore:
    """The :class:`VectorStore` half: ``scope`` is a keyword filter on every search."""

    name = "qdrant-vectors"

    def __init__(self, connection: QdrantConnection, dim: int) -> None:
        self.connection = connection
        self.dim = dim

    async def search(self, scope: str, vector: Vector, k: int, threshold: float) -> list[VectorHit]:
        client = await self.connection.client(self.connection.collection, self.dim)
        flt = models.Filter(must=[models.FieldCondition(key="scope", match=models.MatchValue(value=scope))],
                            must_not=[expired(time.time())])
        try:
            found = await client.query_points(self.connection.collection, vector.tolist(), query_filter=flt,
                                              limit=k, score_threshold=threshold, with_payload=True)
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        return [VectorHit(p.payload["key"], p.payload["prompt"], min(1.0, float(p.score)))
                for p in found.points if p.payload]

    async def upsert(self, record: VectorRecord) -> None:
        client = await self.connection.client(self.connection.collection, self.dim)
        payload: dict[str, Any] = {"scope": record.scope, "key": record.key, "prompt": record.prompt,
                                   WRITTEN: time.time()}
        if record.expires_at is not None:
            payload[EXPIRES] = record.expires_at
        point = models.PointStruct(id=point_id(record.scope, record.key), vector=record.vector.tolist(),
                                   payload=payload)
        try:
            await client.upsert(self.connection.collection, [point])
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        await self.connection.wrote()

    async def delete(self, scope: str, key: str) -> bool:
        client = await self.connection.client(self.connection.collection, self.dim)
        try:
            await client.delete(self.connection.collection,
                                models.PointIdsList(points=[point_id(scope, key)]))
        except Exception as exc:
            raise BackendUnavailable(f"qdrant: {exc}") from exc
        return True

    async def aclose(self) -> None:
        await self.connection.aclose()


def _vector_store(params: QdrantSemanticCacheParams, dim: int, backend: Backend) -> VectorStore:
    """The vectors' collection, through the exact store's client when it is Qdrant's (one client)."""
    connection = backend.connection if isinstance(backend, QdrantExactStore) else QdrantConnection(params)
    return QdrantVectorStore(connection, dim)


class QdrantSemanticBackend:
    """Registry entry: the vector store reuses the exact store's connection (one client)."""

    vector_store: ClassVar[VectorStoreMaker[QdrantSemanticCacheParams]] = _vector_store

    @classmethod
    def from_params(cls, params: QdrantSemanticCacheParams) -> Backend:
        return QdrantExactStore(QdrantConnection(params))
