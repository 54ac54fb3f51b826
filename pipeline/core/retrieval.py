"""Nearest-neighbour search over image embeddings, and how well it finds the same class.

:class:`VectorIndex` answers cosine nearest neighbours exactly (one matrix product) up to
:data:`EXACT_UP_TO` vectors, and with an approximate HNSW index (``usearch``) above it, where
an exact scan per query gets slow; ``bench/retrieval.py`` measures the approximate index's
recall against the exact answer (docs/benchmarks.md).

:func:`precision_at_k` is the retrieval figure ``evaluate`` reports: for each test image,
its nearest train images — never one of its own product or duplicate cluster, which would be
the same stone — and the share of them with the query's class.

Example:
    >>> index = VectorIndex(train_vectors)
    >>> rows, sims = index.search(query_vector, 10)
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: up to this many vectors the exact search wins (bench/retrieval.py, 2 cores, 1280-d: 2.6 ms
#: a query at 20,000 vectors, 19 ms at 100,000, 1.6 ms batched), where building the HNSW
#: index costs 16 s and 159 s; above it (1 GB of float32 vectors) the index is worth building
EXACT_UP_TO = 200_000


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 1:
        return x / max(float(np.linalg.norm(x)), 1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class VectorIndex:
    """Cosine nearest neighbours over ``vectors`` (rows), exact or approximate by size."""

    def __init__(self, vectors: np.ndarray, exact_up_to: int = EXACT_UP_TO,
                 approximate: bool | None = None) -> None:
        self.vectors = _unit(vectors)
        self.approximate = len(self.vectors) > exact_up_to if approximate is None else approximate
        self._hnsw = None
        if self.approximate and len(self.vectors):
            from usearch.index import Index

            self._hnsw = Index(ndim=self.vectors.shape[1], metric="cos", dtype="f32")
            self._hnsw.add(np.arange(len(self.vectors), dtype=np.uint64), self.vectors)

    @property
    def kind(self) -> str:
        return "usearch-hnsw" if self._hnsw is not None else "exact"

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices and cosine similarities of the ``k`` nearest, best first."""
        k = min(k, len(self.vectors))
        if k <= 0:
            return np.zeros(0, int), np.zeros(0, np.float32)
        q = _unit(query)
        if self._hnsw is not None:
            found = self._hnsw.search(q, k)
            keys = np.asarray(found.keys, np.int64)
            return keys, (1.0 - np.asarray(found.distances, np.float32))
        sims = self.vectors @ q
        idx = np.argpartition(-sims, k - 1)[:k]
        idx = idx[np.argsort(-sims[idx], kind="stable")]
        return idx, sims[idx]

    def search_many(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Row indices (queries × ``k``) of each query's nearest, best first."""
        k = min(k, len(self.vectors))
        if self._hnsw is not None:
            found = self._hnsw.search(_unit(queries), k)
            return np.asarray(found.keys, np.int64).reshape(len(queries), k)
        sims = _unit(queries) @ self.vectors.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, idx, 1), axis=1, kind="stable")
        return np.take_along_axis(idx, order, 1)


def precision_at_k(query: np.ndarray, query_labels, query_groups, base: np.ndarray, base_labels,
                   base_groups, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Mean share of each query's ``k`` nearest base rows that have its label, never counting
    a base row of the query's own group (its product joined with its duplicate cluster).

    Returns ``{"p@1": …, "p@5": …, "p@10": …, "queries": n}`` (None where nothing to search).
    """
    ql, qg = np.asarray(query_labels).astype(str), np.asarray(query_groups).astype(str)
    bl, bg = np.asarray(base_labels).astype(str), np.asarray(base_groups).astype(str)
    out: dict = {"queries": len(ql)}
    if not len(ql) or not len(bl):
        return {**out, **{f"p@{k}": None for k in ks}}
    index = VectorIndex(base)
    # ask for enough rows that k survive after dropping the query's own group
    extra = int(max((bg == g).sum() for g in set(qg))) if len(qg) else 0
    want = min(max(ks) + extra, len(bl))
    near = index.search_many(query, want)
    hits = {k: [] for k in ks}
    for r in range(len(ql)):
        keep = near[r][bg[near[r]] != qg[r]]
        for k in ks:
            top = keep[:k]
            if len(top):
                hits[k].append(float((bl[top] == ql[r]).mean()))
    out.update({f"p@{k}": round(float(np.mean(v)), 4) if v else None for k, v in hits.items()})
    out["index"] = index.kind
    return out
