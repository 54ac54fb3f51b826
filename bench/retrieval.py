"""The approximate nearest-neighbour index against the exact search it replaces above
``core.retrieval.EXACT_UP_TO`` vectors: recall@10, build time, time per query.

The vectors: ``--real DIR`` takes a data folder's shared embeddings (``data/embeddings``)
and tiles them with small noise up to each size; without it, clustered random vectors of
the embedding's width (1,280).

Usage:
    .venv/bin/python bench/retrieval.py [--sizes 20000,100000] [--queries 200] [--real data]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.retrieval import VectorIndex  # noqa: E402


def vectors(n: int, real: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if real is not None:
        base = real[rng.integers(len(real), size=n)]
        return (base + 0.05 * base.std() * rng.standard_normal(base.shape)).astype(np.float32)
    centres = rng.standard_normal((max(n // 50, 2), 1280)).astype(np.float32)
    labels = rng.integers(len(centres), size=n)
    return centres[labels] + 0.6 * rng.standard_normal((n, 1280)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--real", help="a data folder whose shared embeddings to tile")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "retrieval.json"))
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    real = None
    if a.real:
        from pipeline.core.embedding import EmbeddingCache, mean_part

        cache = EmbeddingCache.for_data_dir(a.real)
        cache._load()
        real = mean_part(np.asarray(cache._vecs, np.float32))
    rows = []
    for n in map(int, a.sizes.split(",")):
        x = vectors(n, real, rng)
        noise = 0.01 * rng.standard_normal((a.queries, x.shape[1])).astype(np.float32)
        q = x[rng.integers(n, size=a.queries)] + noise
        t = time.perf_counter()
        exact = VectorIndex(x, approximate=False)
        t_exact_build = time.perf_counter() - t
        t = time.perf_counter()
        truth = exact.search_many(q, 10)
        t_exact = (time.perf_counter() - t) / a.queries
        t = time.perf_counter()
        approx = VectorIndex(x, approximate=True)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        got = np.stack([approx.search(v, 10)[0] for v in q])
        t_query = (time.perf_counter() - t) / a.queries
        t = time.perf_counter()
        for v in q:
            exact.search(v, 10)
        t_exact_one = (time.perf_counter() - t) / a.queries
        recall = float(np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, truth, strict=True)]))
        row = {"vectors": n, "recall@10": round(recall, 4), "hnsw_build_s": round(t_build, 1),
               "hnsw_query_ms": round(1000 * t_query, 2), "exact_query_ms": round(1000 * t_exact_one, 2),
               "exact_batched_query_ms": round(1000 * t_exact, 2),
               "exact_normalise_s": round(t_exact_build, 2),
               "source": "real, tiled" if a.real else "clustered"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
