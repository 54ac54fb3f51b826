"""Seeds that are the same in every process: one picture is drawn from one name."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(*parts: object) -> int:
    """A 63-bit integer hash of ``parts`` that is the same in every process."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded from ``parts`` (stable across processes and runs)."""
    return np.random.default_rng(stable_int(*parts))
