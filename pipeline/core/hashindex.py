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

import numba
import numpy as np

logger = logging.getLogger(__name__)

MAX_BLOCK_BITS = 24


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


@numba.njit(cache=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def _build_table(hashes, shift, bits):
    nb = 1 << bits
    mask = np.uint64(nb - 1)
    counts = np.zeros(nb + 1, np.int64)
    for h in hashes:
        counts[((h >> np.uint64(shift)) & mask) + np.uint64(1)] += 1
    for i in range(nb):
        counts[i + 1] += counts[i]
    order = np.empty(hashes.shape[0], np.int64)
    fill = counts[:-1].copy()
    for i in range(hashes.shape[0]):
        k = (hashes[i] >> np.uint64(shift)) & mask
        order[fill[k]] = i
        fill[k] += 1
    return counts, order


# long: a numba-compiled inner loop: a call per candidate costs more than the search itself
@numba.njit(cache=True, nogil=True)
def _search(queries, qoffset, hashes, shifts, bitss, radii, masks_flat, masks_start, offsets_flat,
            offsets_start, orders, sorted_h, radius, self_join):
    """Pairs (query index, hash index, distance); first matching block only (no duplicates)."""
    nblocks = shifts.shape[0]
    cap = 1024
    out_q = np.empty(cap, np.int64)
    out_j = np.empty(cap, np.int64)
    out_d = np.empty(cap, np.int64)
    n_out = 0
    for qi in range(queries.shape[0]):
        q = queries[qi]
        self_i = qi + qoffset
        for b in range(nblocks):
            s = radii[b]
            if s < 0:
                continue
            shift = np.uint64(shifts[b])
            bmask = np.uint64((1 << bitss[b]) - 1)
            key = (q >> shift) & bmask
            m0 = masks_start[b]
            m1 = masks_start[b + 1]
            o0 = offsets_start[b]
            for mi in range(m0, m1):
                k = key ^ masks_flat[mi]
                lo = offsets_flat[o0 + k]
                hi = offsets_flat[o0 + k + 1]
                base = b * hashes.shape[0]
                for t in range(lo, hi):
                    # bucket members are stored contiguously: a sequential scan, no random access
                    h = sorted_h[base + t]
                    d = _popcount(q ^ h)
                    if d > radius:
                        continue
                    j = orders[base + t]
                    if self_join and j <= self_i:
                        continue
                    # report the pair from the first block where it falls within its radius
                    first = True
                    for b2 in range(b):
                        s2 = radii[b2]
                        if s2 < 0:
                            continue
                        sh2 = np.uint64(shifts[b2])
                        bm2 = np.uint64((1 << bitss[b2]) - 1)
                        if _popcount(((q ^ h) >> sh2) & bm2) <= s2:
                            first = False
                            break
                    if not first:
                        continue
                    if n_out == cap:
                        cap *= 2
                        nq = np.empty(cap, np.int64)
                        nj = np.empty(cap, np.int64)
                        nd = np.empty(cap, np.int64)
                        nq[:n_out] = out_q[:n_out]
                        nj[:n_out] = out_j[:n_out]
                        nd[:n_out] = out_d[:n_out]
                        out_q, out_j, out_d = nq, nj, nd
                    out_q[n_out] = qi
                    out_j[n_out] = j
                    out_d[n_out] = d
                    n_out += 1
    return out_q[:n_out], out_j[:n_out], out_d[:n_out]


class HashIndex:
    """An in-memory multi-index over 64-bit hashes, built for one search radius.

    Args:
        hashes: uint64 array (any int array is viewed as uint64).
        radius: The largest Hamming radius that will be searched; the block
            layout is chosen for it (searching a smaller radius stays exact).
    """

    def __init__(self, hashes: np.ndarray, radius: int = 10) -> None:
        if not 0 <= radius <= 64:
            raise ValueError("radius must be in 0..64")
        self.hashes = np.ascontiguousarray(np.asarray(hashes).astype(np.uint64, copy=False))
        self.radius = radius
        layout, radii = block_layout(len(self.hashes), radius)
        self._layout = layout
        self._plans: dict[int, tuple] = {}
        self.shifts = np.array([s for s, _ in layout], np.int64)
        self.bits = np.array([b for _, b in layout], np.int64)
        offsets, orders = [], []
        for shift, b in layout:
            off, order = _build_table(self.hashes, shift, b)
            offsets.append(off)
            orders.append(order)
        self._offsets_flat = np.concatenate(offsets) if offsets else np.zeros(1, np.int64)
        starts = np.cumsum([0] + [len(o) for o in offsets])
        self._offsets_start = starts.astype(np.int64)
        self._orders = (np.concatenate(orders) if orders else np.zeros(0, np.int64))
        self._sorted = (np.concatenate([self.hashes[o] for o in orders]) if orders
                        else np.zeros(0, np.uint64))
        logger.debug("hash index: %d hashes, blocks %s, radii %s", len(self.hashes),
                     [b for _, b in layout], radii)

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        """Memory held by the tables and hashes."""
        return (self.hashes.nbytes + self._offsets_flat.nbytes + self._orders.nbytes
                + self._sorted.nbytes)

    def _plan_cached(self, radius: int):
        if radius not in self._plans:
            self._plans[radius] = self._plan(radius)
        return self._plans[radius]

    def _plan(self, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if radius > self.radius:
            raise ValueError(f"index built for radius {self.radius}, asked for {radius}")
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
        return _search(np.ascontiguousarray(queries.astype(np.uint64, copy=False)), qoffset,
                       self.hashes, self.shifts, self.bits, radii, flat, start, self._offsets_flat,
                       self._offsets_start, self._orders, self._sorted, radius, self_join)

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
        return self._chunked(self.hashes, radius, True, workers)

    def query(self, queries: np.ndarray, radius: int | None = None, workers: int | None = None):
        """Every (query, indexed hash) pair within ``radius`` bits.

        Returns:
            ``(query_index, index_position, distance)`` int64 arrays, sorted.
        """
        radius = self.radius if radius is None else radius
        q = np.ascontiguousarray(np.asarray(queries).astype(np.uint64, copy=False))
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
