"""Exact Hamming-radius search over 64-bit perceptual hashes: multi-index hashing.

Finding every pair of hashes within ``r`` bits by comparing all pairs costs
n²/2 popcounts: 5·10¹¹ at a million images. Multi-index hashing (Norouzi et
al., 2012) splits the 64 bits into ``m`` blocks. By the pigeonhole principle,
two hashes within ``r`` bits agree within ``s_i`` bits on at least one block
``i`` whenever ``Σ (s_i + 1) ≥ r + 1``; so each hash only needs to look up the
few block values within ``s_i`` bits of its own in a per-block table, and
checks the full distance of the hashes it finds there. The result is *exactly*
the brute-force answer (``tests/test_hashindex.py`` proves it), at a cost that
grows roughly linearly with n for well-spread hashes.

The tables are built in memory from the hashes (a counting sort, O(n)); only
the hashes are persisted (see :mod:`pipeline.stages.dedupe`), so a refresh loads them,
rebuilds the tables in a fraction of a second and searches only the new hashes.

Example:
    >>> idx = HashIndex(hashes)                 # uint64 array
    >>> i, j, d = idx.pairs(radius=10)          # every pair i < j within 10 bits
    >>> qi, j, d = idx.query(new_hashes, 10)    # new hashes against the index
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

import numpy as np

logger = logging.getLogger(__name__)

MAX_BLOCK_BITS = 24
# Searches of at most this many hash pairs are answered by vectorised brute force (about
# 0.2 s at the limit, ~2,800 hashes against each other): below it, importing numba and
# loading or compiling the kernels (0.8 s cached, 8.5 s the first time in a fresh checkout)
# costs more than the whole search. Both give exactly the same pairs (tests/test_hashindex.py).
BRUTE_FORCE_MAX = 4_000_000


def block_layout(n: int, radius: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Choose blocks (shift, bits) and per-block search radii for ``n`` hashes.

    Blocks of about log2(n) bits make each table bucket hold about one hash;
    shorter blocks are used when the radius is large, so that enumerating the
    neighbours of a block value stays cheap.

    Returns:
        ``[(shift, bits), ...]`` and ``[s_0, ...]`` with ``Σ (s_i + 1) ≥ radius + 1``.
    """
    best = None
    for m in range(max(1, math.ceil(64 / MAX_BLOCK_BITS)), 17):
        bits = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        q, rem = divmod(radius + 1, m)
        radii = [q - 1 + (1 if i < rem else 0) for i in range(m)]
        # cost model: each enumerated neighbour is one random table lookup (a cache
        # miss, ~20 popcounts' worth) plus a sequential scan of its bucket
        cost = 0.0
        for b, s in zip(bits, radii, strict=True):
            if s < 0:
                continue
            v = sum(math.comb(b, k) for k in range(s + 1))
            cost += v * (20.0 + max(n, 1) / 2.0**b)
        if best is None or cost < best[0]:
            best = (cost, bits, radii)
    assert best is not None
    _, bits, radii = best
    layout, shift = [], 0
    for b in bits:
        layout.append((shift, b))
        shift += b
    return layout, radii


def flip_masks(bits: int, radius: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``radius`` bits set (popcount order)."""
    out = [0]
    for k in range(1, min(radius, bits) + 1):
        for combo in combinations(range(bits), k):
            v = 0
            for c in combo:
                v |= 1 << c
            out.append(v)
    return np.array(out, dtype=np.uint64)


class HashIndex:
    """An in-memory multi-index over 64-bit hashes, built for one search radius.

    Args:
        hashes: uint64 array (any int array is viewed as uint64).
        radius: The largest Hamming radius that will be searched; the block
            layout is chosen for it (searching a smaller radius stays exact).
    """

    def __init__(self, hashes: np.ndarray, radius: int = 10,
                 brute_force_max: int = BRUTE_FORCE_MAX) -> None:
        if not 0 <= radius <= 64:
            raise ValueError("radius must be in 0..64")
        self.hashes = np.ascontiguousarray(np.asarray(hashes).astype(np.uint64, copy=False))
        self.radius = radius
        self.brute_force_max = brute_force_max
        layout, radii = block_layout(len(self.hashes), radius)
        self._layout = layout
        self._plans: dict[int, tuple] = {}
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.shifts = np.array([s for s, _ in layout], np.int64)
        self.bits = np.array([b for _, b in layout], np.int64)
        logger.debug("hash index: %d hashes, blocks %s, radii %s", len(self.hashes),
                     [b for _, b in layout], radii)

    def _built(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The per-block tables (a counting sort each), built on the first large search."""
        if self._tables is None:
            from pipeline.core._hashkernels import _build_table

            offsets, orders = [], []
            for shift, b in self._layout:
                off, order = _build_table(self.hashes, shift, b)
                offsets.append(off)
                orders.append(order)
            flat = np.concatenate(offsets) if offsets else np.zeros(1, np.int64)
            starts = np.cumsum([0] + [len(o) for o in offsets]).astype(np.int64)
            order = np.concatenate(orders) if orders else np.zeros(0, np.int64)
            ranked = (np.concatenate([self.hashes[o] for o in orders]) if orders
                      else np.zeros(0, np.uint64))
            self._tables = (flat, starts, order, ranked)
        return self._tables

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        """Memory held by the hashes and the tables (once a search has built them)."""
        return self.hashes.nbytes + sum(t.nbytes for t in self._tables or ())

    def _plan_cached(self, radius: int):
        if radius not in self._plans:
            self._plans[radius] = self._plan(radius)
        return self._plans[radius]

    def _check(self, radius: int) -> int:
        if radius > self.radius:
            raise ValueError(f"index built for radius {self.radius}, asked for {radius}")
        return radius

    def _plan(self, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check(radius)
        m = len(self._layout)
        q, rem = divmod(radius + 1, m)
        radii = np.array([q - 1 + (1 if i < rem else 0) for i in range(m)], np.int64)
        masks = [flip_masks(int(b), int(s)) if s >= 0 else np.zeros(0, np.uint64)
                 for b, s in zip(self.bits, radii, strict=True)]
        start = np.cumsum([0] + [len(x) for x in masks]).astype(np.int64)
        flat = np.concatenate(masks) if masks else np.zeros(0, np.uint64)
        return radii, flat, start

    def _run(self, queries: np.ndarray, radius: int, self_join: bool, qoffset: int = 0):
        radii, flat, start = self._plan_cached(radius)
        if len(queries) == 0 or len(self.hashes) == 0:
            z = np.zeros(0, np.int64)
            return z, z.copy(), z.copy()
        from pipeline.core._hashkernels import _search

        offsets_flat, offsets_start, orders, ranked = self._built()
        return _search(np.ascontiguousarray(queries.astype(np.uint64, copy=False)), qoffset,
                       self.hashes, self.shifts, self.bits, radii, flat, start, offsets_flat,
                       offsets_start, orders, ranked, radius, self_join)

    def _chunked(self, queries: np.ndarray, radius: int, self_join: bool, workers: int | None):
        workers = workers or min(4, os.cpu_count() or 1)
        n = len(queries)
        step = max(1, min(50_000, -(-n // (4 * workers))))
        starts = list(range(0, n, step))

        def one(a: int):
            qi, j, d = self._run(queries[a:a + step], radius, self_join, a)
            return qi + a, j, d

        if workers == 1 or len(starts) == 1:
            return _sorted([one(a) for a in starts])
        # the kernel releases the GIL, so threads use every core without copying the tables
        with ThreadPoolExecutor(workers) as pool:
            return _sorted(list(pool.map(one, starts)))

    def pairs(self, radius: int | None = None, workers: int | None = None):
        """Every pair ``i < j`` of indexed hashes within ``radius`` bits.

        Args:
            radius: Search radius (at most the radius the index was built for).
            workers: Threads (default: the CPU count, at most 4).

        Returns:
            ``(i, j, distance)`` int64 arrays, sorted by (i, j).
        """
        radius = self.radius if radius is None else radius
        if len(self.hashes) * (len(self.hashes) - 1) // 2 <= self.brute_force_max:
            return brute_force_pairs(self.hashes, self._check(radius))
        return self._chunked(self.hashes, radius, True, workers)

    def query(self, queries: np.ndarray, radius: int | None = None, workers: int | None = None):
        """Every (query, indexed hash) pair within ``radius`` bits.

        Returns:
            ``(query_index, index_position, distance)`` int64 arrays, sorted.
        """
        radius = self.radius if radius is None else radius
        q = np.ascontiguousarray(np.asarray(queries).astype(np.uint64, copy=False))
        if len(q) * len(self.hashes) <= self.brute_force_max:
            return brute_force_query(self.hashes, q, self._check(radius))
        return self._chunked(q, radius, False, workers)


def _sorted(parts):
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    d = np.concatenate([p[2] for p in parts])
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def brute_force_pairs(hashes: np.ndarray, radius: int, chunk: int | None = None):
    """Reference answer: all pairs ``i < j`` within ``radius``, by vectorized brute force.

    Compares every pair in blocks of ``chunk`` rows (``np.bitwise_count``), so
    memory stays bounded while the work is the full n²/2.
    """
    h = np.asarray(hashes).astype(np.uint64, copy=False)
    n = len(h)
    chunk = chunk or max(1, (1 << 25) // max(n, 1))  # ~256 MB of distances at a time
    out_i, out_j, out_d = [], [], []
    for a in range(0, n, chunk):
        block = h[a:a + chunk]
        d = np.bitwise_count(block[:, None] ^ h[None, a:])
        ii, jj = np.nonzero(d <= radius)
        keep = jj > ii  # j is relative to a
        ii, jj = ii[keep], jj[keep]
        out_i.append(ii + a)
        out_j.append(jj + a)
        out_d.append(d[ii, jj].astype(np.int64))
    return _sorted([(np.concatenate(out_i) if out_i else np.zeros(0, np.int64),
                     np.concatenate(out_j) if out_j else np.zeros(0, np.int64),
                     np.concatenate(out_d) if out_d else np.zeros(0, np.int64))])


def brute_force_query(hashes: np.ndarray, queries: np.ndarray, radius: int, chunk: int | None = None):
    """Reference answer for :meth:`HashIndex.query`."""
    h = np.asarray(hashes).astype(np.uint64, copy=False)
    q = np.asarray(queries).astype(np.uint64, copy=False)
    chunk = chunk or max(1, (1 << 25) // max(len(h), 1))
    parts = []
    for a in range(0, len(q), chunk):
        d = np.bitwise_count(q[a:a + chunk, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= radius)
        parts.append((ii + a, jj.astype(np.int64), d[ii, jj].astype(np.int64)))
    return _sorted(parts)
