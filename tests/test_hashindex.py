"""Multi-index hashing returns exactly what brute force returns; small searches take the
brute-force path itself without importing numba."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from pipeline.core.hashindex import HashIndex, block_layout, brute_force_pairs, brute_force_query, flip_masks


def planted(n: int, seed: int, clustered: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if clustered:  # real hashes are not uniform: many share high bits
        base = rng.integers(0, 2**63, 8, dtype=np.int64).astype(np.uint64)
        h = base[rng.integers(0, 8, n)] ^ rng.integers(0, 2**20, n).astype(np.uint64)
    else:
        h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    k = n // 5
    near = h[rng.integers(0, n, k)].copy()
    for _ in range(12):
        bit = rng.integers(0, 64, k).astype(np.uint64)
        near ^= (np.uint64(1) << bit) * (rng.random(k) < 0.6).astype(np.uint64)
    return np.concatenate([h, near, h[:3]])  # and a few exact copies


RADII = [0, 3, 8, 10, 14]


@functools.cache
def _brute_force_widest(n: int, seed: int, clustered: bool):
    return brute_force_pairs(planted(n, seed, clustered), max(RADII))


def brute_force_within(n: int, seed: int, clustered: bool, radius: int):
    """Brute force's pairs of a planted set within ``radius``: the set's pairs within the
    largest radius tested, computed once and filtered (the n = 20,000 set costs 2·10⁸
    comparisons a time)."""
    i, j, d = _brute_force_widest(n, seed, clustered)
    keep = d <= radius
    return i[keep], j[keep], d[keep]


@pytest.mark.parametrize("n,seed,clustered", [(50, 0, False), (3000, 1, False), (3000, 2, True),
                                              (20000, 3, False)])
@pytest.mark.parametrize("radius", RADII)
def test_pairs_equal_brute_force(n, seed, clustered, radius):
    h = planted(n, seed, clustered)
    got = HashIndex(h, radius, brute_force_max=0).pairs()
    want = brute_force_within(n, seed, clustered, radius)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    assert len(want[0]) > 0


@pytest.mark.parametrize("radius", [2, 10])
def test_query_equals_brute_force_and_smaller_radius_is_exact(radius):
    h = planted(5000, 7)
    q = planted(400, 8)
    idx = HashIndex(h, 12, brute_force_max=0)
    for g, w in zip(idx.query(q, radius), brute_force_query(h, q, radius), strict=True):
        np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError):
        idx.query(q, 13)


@pytest.mark.parametrize("brute_force_max", [0, 10**9])
def test_empty_and_single(brute_force_max):
    for h in (np.zeros(0, np.uint64), np.ones(1, np.uint64)):
        idx = HashIndex(h, 10, brute_force_max=brute_force_max)
        assert all(len(x) == 0 for x in idx.pairs())
        assert all(len(x) == 0 for x in idx.query(np.zeros(0, np.uint64)))


def test_a_small_search_is_exact_without_numba():
    """The dedupe stage's usual refresh: a few hundred hashes. The default path gives the
    multi-index answer (self-join and query, a smaller radius, the radius check) and never
    imports numba (a child process: this one may have imported it already)."""
    import subprocess
    import sys

    code = """
import sys, numpy as np
from tests.test_hashindex import planted
from pipeline.core.hashindex import HashIndex
h = planted(400, 3, clustered=True); q = np.concatenate([h[:30] ^ np.uint64(5), planted(30, 4)])
idx = HashIndex(h, 10)
out = [[a.tolist() for a in idx.pairs(8)], [a.tolist() for a in idx.query(q, 10)]]
try:
    idx.pairs(11)
except ValueError:
    out.append("refused")
assert "numba" not in sys.modules, "numba imported"
print(repr(out))
"""
    from tests.helpers import ROOT

    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    h = planted(400, 3, clustered=True)
    q = np.concatenate([h[:30] ^ np.uint64(5), planted(30, 4)])
    mih = HashIndex(h, 10, brute_force_max=0)
    want = [[a.tolist() for a in mih.pairs(8)], [a.tolist() for a in mih.query(q, 10)], "refused"]
    assert res.stdout.strip() == repr(want)
    assert len(want[0][0]) > 0 and len(want[1][0]) > 0


def test_layout_obeys_the_pigeonhole_bound():
    for n in (10, 10_000, 1_000_000):
        for r in (0, 5, 10, 16):
            layout, radii = block_layout(n, r)
            assert sum(b for _, b in layout) == 64
            assert sum(s + 1 for s in radii) >= r + 1


def test_flip_masks_count():
    assert len(flip_masks(16, 2)) == 1 + 16 + 120
    assert len(set(flip_masks(10, 3).tolist())) == 1 + 10 + 45 + 120
