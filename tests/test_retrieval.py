"""Nearest-neighbour search and the retrieval figure, with known answers."""

from __future__ import annotations

import numpy as np

from pipeline.core.retrieval import VectorIndex, precision_at_k


def clusters(n_classes=4, per=30, d=64, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d))
    labels = np.repeat(np.arange(n_classes), per)
    return centres[labels] + spread * rng.normal(size=(len(labels), d)), labels


def test_exact_search_is_cosine_order_and_the_approximate_index_agrees():
    x, _ = clusters(per=200, d=32)
    q = x[5] + 0.01
    exact = VectorIndex(x)
    assert exact.kind == "exact"
    idx, sims = exact.search(q, 10)
    want = np.argsort(-(x / np.linalg.norm(x, axis=1, keepdims=True)) @ (q / np.linalg.norm(q)))[:10]
    assert list(idx) == list(want) and idx[0] == 5 and np.all(np.diff(sims) <= 1e-6)
    approx = VectorIndex(x, approximate=True)
    assert approx.kind == "usearch-hnsw"
    many_a, many_e = approx.search_many(x[:100], 10), exact.search_many(x[:100], 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(many_a, many_e, strict=True)])
    assert recall >= 0.95, recall
    assert VectorIndex(x[:0]).search(q, 3)[0].size == 0


def test_precision_at_k_counts_the_class_and_never_the_querys_own_group():
    x, labels = clusters()
    groups = np.arange(len(labels)) // 3          # products of three photos
    q = np.arange(len(labels)) % 10 == 0
    r = precision_at_k(x[q], labels[q], groups[q], x, labels, groups)
    assert r["queries"] == q.sum() and r["p@1"] == 1.0 and r["p@10"] >= 0.95, r
    # a query's own product is never its neighbour: exact copies of each query, labelled with
    # another class, are skipped under its own group and found first under another group
    dup = np.vstack([x, x[q]])
    wrong = np.r_[labels, (labels[q] + 1) % 4]
    own = precision_at_k(x[q], labels[q], groups[q], dup, wrong, np.r_[groups, groups[q]])
    other = precision_at_k(x[q], labels[q], groups[q], dup, wrong, np.r_[groups, groups[q] + 10_000])
    assert own["p@1"] > 0.8 and other["p@1"] == 0.0  # (own: other queries' copies may come near)
    # shuffled labels: about chance (1 / 4)
    shuffled = np.random.default_rng(1).permutation(labels)
    r_bad = precision_at_k(x[q], labels[q], groups[q], x, shuffled, groups)
    assert r_bad["p@5"] < 0.5
    assert precision_at_k(x[:0], [], [], x, labels, groups)["p@5"] is None
