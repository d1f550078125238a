"""Sign codes: a 64-byte sketch of each vector that finds its near neighbours in microseconds.

Each vector is reduced to 512 bits, the signs of its dot products with 512 fixed random
Gaussian hyperplanes (SimHash, Charikar 2002). Two vectors at angle ``a`` differ in
each bit with probability ``a / pi``, so the Hamming distance between codes estimates
the angle, and a cosine threshold becomes a Hamming cutoff (:func:`hamming_cutoff`).
A search scans every code of a scope with numkong's SIMD Hamming kernel (0.2-0.3 ms
for 100,000 codes here) and hands the few rows under the cutoff to an exact float32
rescoring: the codes only decide which rows are worth scoring, never a reported score.

Why not a graph index (HNSW, measured with ``usearch`` at 100,000 x 512 on 2 cores):
building it took 64 s (int8) to 168-336 s (float32), and on data without cluster
structure it found 72-77% of planted near-duplicates at 0.9-1.2 ms per search, 97.5-99%
at 2.6-4.2 ms. A scan
of codes has no build step, is updated in place on every upsert and delete, and misses
a row at cosine >= threshold only with the probability the cutoff allows (below 1e-9).

Codes are kept in one array per scope and packed for the kernel in chunks of
:data:`CHUNK` rows; a write only marks its chunk for repacking at the next search.
"""

from __future__ import annotations

import math

import numkong
import numpy as np
import numpy.typing as npt

BITS = 512
"""Hyperplanes per code; each code is ``BITS // 8`` bytes."""

CHUNK = 8192
"""Rows packed together for the Hamming kernel (repacking one after a write: ~0.1 ms)."""

MISS_SIGMAS = 6.0
"""How far above the expected Hamming distance at the threshold the cutoff lies."""

_BLOCK = 256
"""Rows per BLAS matrix-vector call. From 1,024 rows x 512 OpenBLAS starts its second
thread, which waits for a scheduler tick on a busy machine (p95 8-20 ms, measured); up to
512 rows it stayed single-threaded (p95 0.015 ms at load average 5) at the same cost per row."""

Codes = npt.NDArray[np.uint8]
Rows = npt.NDArray[np.intp]


def dot_rows(matrix: npt.NDArray[np.float32], vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``matrix @ vector``, in single-threaded blocks (see :data:`_BLOCK`)."""
    if len(matrix) <= _BLOCK:
        return matrix @ vector
    out = np.empty(len(matrix), dtype=np.float32)
    for start in range(0, len(matrix), _BLOCK):
        np.matmul(matrix[start : start + _BLOCK], vector, out=out[start : start + _BLOCK])
    return out


def hamming_cutoff(threshold: float) -> int:
    """The largest Hamming distance a row at cosine >= ``threshold`` plausibly has.

    At cosine ``t`` each bit differs with probability ``p = arccos(t) / pi``; the cutoff is
    the binomial mean plus :data:`MISS_SIGMAS` standard deviations, so a row at or above
    the threshold is left out with probability below 1e-9.
    """
    p = math.acos(min(1.0, max(-1.0, threshold))) / math.pi
    return min(BITS, int(BITS * p + MISS_SIGMAS * math.sqrt(BITS * p * (1 - p))) + 1)


class Hyperplanes:
    """The fixed random hyperplanes for vectors of ``dim`` dimensions (seeded: reproducible)."""

    def __init__(self, dim: int) -> None:
        rng = np.random.default_rng(0x5E1F)
        self.normals = rng.standard_normal((BITS, dim)).astype(np.float32)

    def encode(self, vectors: npt.NDArray[np.float32]) -> Codes:
        """Codes of many rows at once (replay, or a scope that just grew large)."""
        return np.packbits(vectors @ self.normals.T > 0, axis=1)

    def encode_one(self, vector: npt.NDArray[np.float32]) -> Codes:
        return np.packbits(dot_rows(self.normals, vector) > 0)


class SignCodes:
    """The codes of one scope's rows, row ``i`` matching row ``i`` of its float32 matrix."""

    def __init__(self, planes: Hyperplanes, vectors: npt.NDArray[np.float32], capacity: int) -> None:
        self.planes = planes
        self.codes = np.zeros((capacity, BITS // 8), dtype=np.uint8)
        self.codes[: len(vectors)] = planes.encode(vectors)
        self._packed: list[numkong.PackedMatrix | None] = [None] * -(-capacity // CHUNK)

    def resize(self, capacity: int) -> None:
        """Room for ``capacity`` rows; the first ``min(capacity, old capacity)`` codes are kept."""
        resized = np.zeros((capacity, BITS // 8), dtype=np.uint8)
        kept = min(capacity, len(self.codes))
        resized[:kept] = self.codes[:kept]
        self.codes = resized
        chunks = -(-capacity // CHUNK)
        self._packed = self._packed[:chunks] + [None] * (chunks - len(self._packed))
        self._packed[-1] = None  # packed from the old array, maybe with a different row count

    def keep(self, rows: Rows) -> None:
        """Keep only ``rows``, in this order, as the first rows (a bulk removal)."""
        self.codes[: len(rows)] = self.codes[rows]
        self._packed = [None] * len(self._packed)

    def set(self, row: int, vector: npt.NDArray[np.float32]) -> None:
        self.codes[row] = self.planes.encode_one(vector)
        self._packed[row // CHUNK] = None

    def move(self, source: int, target: int) -> None:
        self.codes[target] = self.codes[source]
        self._packed[target // CHUNK] = None

    def near(self, vector: npt.NDArray[np.float32], threshold: float, size: int) -> Rows:
        """Rows among the first ``size`` whose code is within the threshold's cutoff.

        Every row at cosine >= ``threshold`` is among them (but for the cutoff's 1e-9), with
        few others when the threshold is high enough to mean "near": at 0.70, a random
        unrelated row passes with probability ~1e-9 too. A low threshold passes most rows.
        """
        query = self.planes.encode_one(vector)[None]
        scans = []
        for chunk in range(-(-size // CHUNK)):
            packed = self._packed[chunk]
            if packed is None:
                rows = self.codes[chunk * CHUNK : (chunk + 1) * CHUNK]
                packed = self._packed[chunk] = numkong.hammings_pack(rows)
            scans.append(np.asarray(numkong.hammings_packed(query, packed))[0])
        distances = np.concatenate(scans)[:size]
        return np.flatnonzero(distances <= hamming_cutoff(threshold))
