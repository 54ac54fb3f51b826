"""Grouping primitives: union-find and seeded, machine-independent hashing to [0, 1).

Dedupe joins photos into duplicate clusters and split joins products into split
groups with the same union-find; split and augment order groups and photos by
the same seeded hash, so a run is reproducible on any machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from ``seed`` and ``key`` (stable across runs and machines).

    Example:
        >>> 0.0 <= unit_hash(42, "demo/P-001") < 1.0
        True
    """
    d = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(d, "big") / 2**64


class UnionFind:
    """Union-find over arbitrary hashable keys (path halving, union by size).

    Example:
        >>> uf = UnionFind(); uf.union("a", "b"); uf.find("a") == uf.find("b")
        True
    """

    def __init__(self) -> None:
        self.parent: dict = {}
        self.size: dict = {}

    def find(self, x: Hashable) -> Hashable:
        parent = self.parent
        if x not in parent:
            parent[x] = x
            self.size[x] = 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
