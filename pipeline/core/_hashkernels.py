"""The numba-compiled kernels of :mod:`pipeline.core.hashindex` (multi-index hashing).

A module of their own so that importing the index costs no numba import and no compile:
:class:`~pipeline.core.hashindex.HashIndex` answers small searches by vectorised brute force
and imports this module on its first large one (numba's own cache, ``cache=True``, keeps the
compiled code beside this file).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True, inline="always")
def _block(x, shift, bits):
    """The ``bits``-bit block of ``x`` starting at bit ``shift``."""
    return (x >> np.uint64(shift)) & np.uint64((1 << bits) - 1)


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
            key = _block(q, shifts[b], bitss[b])
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
                        if _popcount(_block(q ^ h, shifts[b2], bitss[b2])) <= s2:
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
