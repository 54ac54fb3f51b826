"""Evaluation metrics on hand-made labels with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.stages import evaluate


def test_top_k_accuracy_known_answer():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1], [0.05, 0.15, 0.8]])
    labels = np.array([0, 1, 1, 0])
    assert evaluate.top_k_accuracy(probs, labels, 1) == 0.25
    assert evaluate.top_k_accuracy(probs, labels, 2) == 0.75
    assert evaluate.top_k_accuracy(probs, labels, 5) == 1.0   # k above the classes: all


def test_per_class_precision_recall_fpr_fnr_known_answer():
    names = ["ruby", "spinel", "garnet"]
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 2])
    cm = evaluate.confusion(y, p, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 4]]
    t = evaluate.per_class(cm, names).set_index("label")
    assert t.loc["ruby", "precision"] == 0.75 and t.loc["ruby", "recall"] == 0.75
    assert t.loc["spinel", "precision"] == 0.5 and t.loc["spinel", "recall"] == 0.5
    assert t.loc["garnet", "f1"] == 1.0
    assert np.isclose(t.loc["ruby", "fpr"], 1 / 6) and t.loc["ruby", "fnr"] == 0.25
    assert t["support"].tolist() == [4, 2, 4]
    never = evaluate.per_class(np.array([[2, 0], [1, 0]]), ["a", "b"]).set_index("label")
    assert pd.isna(never.loc["b", "precision"])  # never predicted: no claim, not zero


def test_the_misclassification_table_reads_like_the_gemstone_report():
    names = ["Blue Topaz", "Swiss Blue Topaz", "London Blue Topaz"]
    cm = np.array([[21, 71, 8], [5, 95, 0], [0, 0, 10]])
    t = evaluate.misclassification_table(cm, names)
    assert t.iloc[0]["label"] == "Blue Topaz" and t.iloc[0]["error"] == 0.79
    assert evaluate.describe_errors(t)[0] == \
        "Blue Topaz: 71.0% as Swiss Blue Topaz, 8.0% as London Blue Topaz"
    assert "London Blue Topaz" not in set(t["label"])  # no errors: not in the table


def test_cosine_means_equal_brute_force_and_search_is_exact():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(150, 8)) + np.repeat(np.eye(3, 8) * 3, 50, axis=0)
    labels = np.repeat(np.arange(3), 50)
    x = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = x @ x.T
    iu = np.triu_indices(150, 1)
    same = (labels[:, None] == labels[None, :])[iu]
    got = evaluate.cosine_stats(e, labels)
    assert np.isclose(got["within_class"], s[iu][same].mean(), atol=1e-4)
    assert np.isclose(got["between_class"], s[iu][~same].mean(), atol=1e-4)
    assert got["within_class"] > got["between_class"]
    q = rng.normal(size=8)
    idx, sims = evaluate.nearest(q, e, 7)
    brute = np.argsort(-(x @ (q / np.linalg.norm(q))), kind="stable")[:7]
    assert idx.tolist() == brute.tolist() and (np.diff(sims) <= 0).all()


def test_flip_tta_is_the_mean_of_the_two_softmaxes():
    keras = pytest.importorskip("keras")
    head = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    head.layers[-1].set_weights([np.array([[1.0, 0.0], [0.0, 1.0]]), np.zeros(2)])
    emb = np.array([[2.0, 0.0]], np.float32)
    mirror = np.array([[0.0, 2.0]], np.float32)
    one = evaluate.tta_probs(head, emb, None)
    both = evaluate.tta_probs(head, emb, mirror)
    e2 = np.exp(2.0)
    assert np.allclose(one, [[e2 / (e2 + 1), 1 / (e2 + 1)]], atol=1e-6)
    assert np.allclose(both, [[0.5, 0.5]], atol=1e-6)   # symmetric: the mirror cancels the photo
    assert evaluate.tta_probs(head, np.zeros((0, 2), np.float32), None).shape[0] == 0
