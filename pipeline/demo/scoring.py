"""Score curation manifests against the demo storefront's ground truth.

Used by ``bench/curation.py`` and the slice tests: duplicate-pair precision and
recall, certificate and hand flag precision and recall, crop IoU.

Example:
    >>> truth = json.loads(Path("truth.json").read_text())
    >>> curation_scores(pd.read_parquet("data/manifests/crop.parquet"), truth)
"""

from __future__ import annotations

from itertools import combinations
from urllib.parse import urlparse

import numpy as np
import pandas as pd


def iou(a, b) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0


def _pairs(groups: pd.Series) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for _, idx in groups.dropna().groupby(groups.dropna()).groups.items():
        out.update(combinations(sorted(idx), 2))
    return out


def pr(pred: set | np.ndarray, true: set | np.ndarray) -> dict[str, float | int]:
    """Precision, recall and counts of a predicted set (or boolean mask) against the truth."""
    if isinstance(pred, np.ndarray):
        tp, p, t = int((pred & true).sum()), int(pred.sum()), int(true.sum())
    else:
        tp, p, t = len(pred & true), len(pred), len(true)
    return {"precision": round(tp / p, 4) if p else 1.0, "recall": round(tp / t, 4) if t else 1.0,
            "true_positives": tp, "predicted": p, "actual": t}


def join_truth(df: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """The manifest rows that have bytes, with the truth's junk, dup_group and bbox."""
    t = pd.DataFrame(truth["images"])
    t["key"] = t["url"]
    d = df[df["path"].notna()].copy()
    d["key"] = d["source_url"].map(lambda u: urlparse(u).path)
    return d.merge(t[["key", "junk", "dup_group", "bbox", "kind"]], on="key", how="inner")


def curation_scores(df: pd.DataFrame, truth: dict) -> dict:
    """Every figure the curation issue asks for, from one crop (or filter/dedupe) manifest."""
    d = join_truth(df, truth).reset_index(drop=True)
    valid = d["junk"].isna() & (d.get("excluded_reason") != "undecodable").fillna(True)
    out: dict = {"rows": len(d)}
    if "dup_cluster" in d:
        v = d[valid]
        out["duplicate_pairs"] = pr(_pairs(v["dup_cluster"]), _pairs(v["dup_group"]))
    for check in ("certificate", "hand"):
        col = f"is_{check}"
        if col in d:
            pred = d[col].fillna(False).to_numpy(bool)
            out[check] = pr(pred, (d["junk"] == check).to_numpy(bool))
    if "object_box" in d:
        photos = d[valid & d["bbox"].notna() & d["crop_issue"].notna()]
        ious = np.array([iou(list(a) if a is not None else None, b)
                         for a, b in zip(photos["object_box"], photos["bbox"], strict=True)])
        out["crop"] = {"n": len(ious), "median_iou": round(float(np.median(ious)), 4) if len(ious) else None,
                       "share_iou_ge_0.75": round(float((ious >= 0.75).mean()), 4) if len(ious) else None,
                       "flagged_for_review": int(photos["crop_path"].isna().sum())}
    return out
