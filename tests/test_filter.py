"""The filter stage: scores into flags, exclusions and review reasons; decisions; the cache."""

from __future__ import annotations

import pandas as pd

from pipeline import filter as filt
from pipeline.config import load_params


def test_junk_leaves_duplicate_clusters_and_label_conflicts():
    """Certificates of different stones from one template cluster in dedupe; the filter,
    knowing they are junk, excludes them as certificates and drops the label conflict."""
    p = load_params(None).filter
    df = pd.DataFrame({
        "image_id": ["c1", "c2", "ph"], "label": ["ruby", "opal", "ruby"],
        "excluded_reason": ["label_conflict", "label_conflict", None],
        "excluded_detail": [None, None, None],
        "needs_review": pd.array([True, True, False], dtype="boolean"),
        "review_reason": pd.array(["label_conflict", "label_conflict;hand", None], dtype="string"),
    })
    sc = pd.DataFrame({"image_id": ["c1", "c2", "ph"], "certificate": [0.95, 0.9, 0.0],
                       "hand": [0.0, 0.35, 0.0], "blurry": [0.0] * 3, "too_small": [0.0] * 3,
                       "too_dark": [0.0] * 3, "too_bright": [0.0] * 3, "low_information": [0.0] * 3})
    out = filt.apply_scores(df, sc, p).set_index("image_id")
    assert out.loc["c1", "excluded_reason"] == "certificate"
    assert not out.loc["c1", "needs_review"] and pd.isna(out.loc["c1", "review_reason"])
    # c2's other doubt (hand score in its band) stays for the annotator
    assert out.loc["c2", "excluded_reason"] == "certificate"
    assert out.loc["c2", "review_reason"] == "hand" and out.loc["c2", "needs_review"]
    assert pd.isna(out.loc["ph", "excluded_reason"])
