"""Label issues: out-of-fold probe + confident learning, against labels moved on purpose."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.core import manifest
from pipeline.core.embedding import FEATURES, EmbeddingCache
from pipeline.stages import labels
from tests.helpers import params


def catalog(n_classes: int = 5, products: int = 24, per_product: int = 2, noise: float = 0.05,
            seed: int = 0, spread: float = 0.9):
    """A filter-like manifest whose embeddings cluster by true class; ``noise`` of the
    products carry another class's label (ground truth returned)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, FEATURES))
    rows, vecs, moved = [], [], set()
    for c in range(n_classes):
        for p in range(products):
            pid = f"c{c}-p{p}"
            wrong = rng.random() < noise
            given = (c + 1 + rng.integers(n_classes - 1)) % n_classes if wrong else c
            for k in range(per_product):
                iid = f"{c:02x}{p:02x}{k:02x}".ljust(64, "0")
                rows.append({"image_id": iid, "path": f"{iid[:2]}/{iid}.jpg", "label": f"class{given}",
                             "product_id": pid, "dup_cluster": pd.NA, "excluded_reason": pd.NA,
                             "excluded_detail": pd.NA, "decision": pd.NA})
                vecs.append(centres[c] + spread * rng.normal(size=FEATURES))
                if wrong:
                    moved.add(iid)
    df = pd.DataFrame(rows)
    for col in ("path", "label", "product_id", "dup_cluster", "excluded_reason", "excluded_detail",
                "decision"):
        df[col] = df[col].astype("string")
    return df, np.array(vecs, np.float32), moved


def cache_with(tmp_path, df, vecs) -> EmbeddingCache:
    cache = EmbeddingCache(tmp_path / "emb")
    cache.add(list(df["image_id"]), vecs)
    return EmbeddingCache(tmp_path / "emb")


def test_moved_labels_are_found_with_their_true_class_suggested(tmp_path):
    df, vecs, moved = catalog(noise=0.06)
    assert 4 <= len(moved) // 2 <= 16  # products moved, two photos each
    out, m = labels.run(df, params(tmp_path / "data"), embeddings=cache_with(tmp_path, df, vecs))
    flagged = set(out.loc[out["label_issue"].fillna(False).astype(bool), "image_id"])
    recall = len(flagged & moved) / len(moved)
    precision = len(flagged & moved) / max(len(flagged), 1)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision, m)
    assert m["label_issues"] == len(flagged) and m["judged"] == len(df)
    hit = out[out["image_id"].isin(flagged & moved)]
    # the suggestion is the class the photo shows (its product's true class)
    truth = hit["product_id"].str.extract(r"c(\d+)-")[0].map(lambda c: f"class{c}")
    assert (hit["label_suggestion"] == truth).mean() >= 0.9
    assert (hit["label_quality"] < 0.5).all()
    assert set(hit["review_reason"]) == {"label_issue"} and hit["needs_review"].all()
    top = json.loads(hit["label_top"].iloc[0])
    assert len(top) == 3 and top[0][0] == hit["label_suggestion"].iloc[0]
    assert out["excluded_reason"].isna().all()  # flagged only, by default
    for col in labels.COLUMNS:  # declared once, in the manifest contract, with the type written
        assert str(out[col].dtype) == manifest.column_for(col).dtype, col


def test_a_product_never_scores_itself():
    """Two photos of one product in one fold: no probe saw either."""
    df, _, _ = catalog(n_classes=2, products=10, per_product=3)
    groups = labels.fold_groups(df)
    assert groups.groupby(df["product_id"]).nunique().max() == 1
    # a duplicate cluster across two products joins them
    df.loc[0, "dup_cluster"] = "x"
    df.loc[len(df) - 1, "dup_cluster"] = "x"
    g = labels.fold_groups(df)
    assert g.iloc[0] == g.iloc[len(df) - 1]


def test_decided_images_are_not_flagged_again_and_hold_out_excludes(tmp_path):
    df, vecs, _ = catalog(n_classes=3, products=16, noise=0.1, seed=1)
    emb = cache_with(tmp_path, df, vecs)
    out, _ = labels.run(df, params(tmp_path / "data"), embeddings=emb)
    first = out.loc[out["label_issue"].fillna(False).astype(bool), "image_id"].tolist()
    assert first
    decided = df.copy()
    decided.loc[decided["image_id"] == first[0], "decision"] = "accept"
    out2, m2 = labels.run(decided, params(tmp_path / "data"), embeddings=emb)
    assert not out2.loc[out2["image_id"] == first[0], "label_issue"].any()
    assert m2["decided_not_flagged"] >= 1
    held, m3 = labels.run(df, params(tmp_path / "data", labels={"hold_out": True}), embeddings=emb)
    f = held["label_issue"].fillna(False).astype(bool)
    assert (held.loc[f, "excluded_reason"] == "label_issue").all() and m3["held_out"] == int(f.sum())
    assert held.loc[f, "excluded_detail"].str.contains("held out until reviewed").all()


def test_off_excluded_and_small_classes_are_not_judged(tmp_path):
    df, vecs, _ = catalog(n_classes=3, products=10)
    emb = cache_with(tmp_path, df, vecs)
    off, m = labels.run(df, params(tmp_path / "data", labels={"enabled": False}), embeddings=emb)
    assert m["judged"] == 0 and off["label_issue"].isna().all()
    df.loc[:4, "excluded_reason"] = "duplicate"
    small = df.copy()
    small.loc[small.index[-3:], "label"] = "rare"
    out, m = labels.run(small, params(tmp_path / "data"), embeddings=emb)
    assert out.loc[:4, "label_issue"].isna().all()  # excluded: not judged
    assert out.loc[out["label"] == "rare", "label_issue"].isna().all()
    assert m["small_classes"] == ["rare"] and m["judged"] == len(df) - 5 - 3


@pytest.mark.parametrize("bad", [{"folds": 1}, {"filter_by": "guess"}, {"min_class_images": 0}])
def test_bad_params_name_the_key(tmp_path, bad):
    from pipeline.core.config import ConfigError

    with pytest.raises(ConfigError, match=f"labels.{next(iter(bad))}"):
        params(tmp_path, labels=bad)


def test_max_quality_keeps_only_the_surest_flags(tmp_path):
    df, vecs, _ = catalog(noise=0.06, seed=2)
    emb = cache_with(tmp_path, df, vecs)
    every, _ = labels.run(df, params(tmp_path / "data"), embeddings=emb)
    surest, _ = labels.run(df, params(tmp_path / "data", labels={"max_quality": 0.02}), embeddings=emb)
    a = every["label_issue"].fillna(False).astype(bool)
    b = surest["label_issue"].fillna(False).astype(bool)
    assert b.sum() <= a.sum() and not (b & ~a).any()
    assert (surest.loc[b, "label_quality"] <= 0.02).all()


def test_the_verdicts_do_not_depend_on_the_order_of_the_rows(tmp_path):
    df, vecs, _ = catalog(n_classes=3, products=14, noise=0.1, seed=3)
    emb = cache_with(tmp_path, df, vecs)
    a, _ = labels.run(df, params(tmp_path / "data"), embeddings=emb)
    b, _ = labels.run(df.sample(frac=1, random_state=5), params(tmp_path / "data"), embeddings=emb)
    cols = ["image_id", "label_issue", "label_suggestion"]
    a = a[cols].sort_values("image_id").reset_index(drop=True)
    b = b[cols].sort_values("image_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def coloured_store(tmp_path, df, seed: int = 0):
    """Each photo a disc of its true class's hue on a light backdrop, at its manifest path."""
    import cv2

    rng = np.random.default_rng(seed)
    hues = (0, 25, 60, 105, 140)  # OpenCV hues: red, yellow, green, blue, violet
    store = tmp_path / "store"
    for path, pid in df[["path", "product_id"]].itertuples(index=False):
        c = int(pid[1:pid.index("-")])
        img = np.full((96, 96, 3), 235 + rng.integers(0, 15), np.uint8)
        hsv = np.uint8([[[hues[c] + rng.integers(-4, 5), 150 + rng.integers(0, 100),
                          120 + rng.integers(0, 120)]]])
        fill = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].tolist()
        centre = (int(rng.integers(35, 60)), int(rng.integers(35, 60)))
        cv2.circle(img, centre, int(rng.integers(15, 30)), fill, -1)
        (store / path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(store / path), img)
    return store


def test_colour_finds_the_moved_labels_an_embedding_cannot_tell(tmp_path):
    """Classes that differ only by colour and an embedding that knows nothing of them: the
    foreground's colour histogram (labels.colour_weight) finds the moved labels, the embedding
    alone flags nearly every photo; an unreadable photo is counted, never fatal."""
    df, _, moved = catalog(n_classes=5, products=16, per_product=1, noise=0.1, seed=4)
    vecs = np.random.default_rng(1).normal(size=(len(df), FEATURES)).astype(np.float32)
    emb = cache_with(tmp_path, df, vecs)
    store = coloured_store(tmp_path, df)

    def found(out):
        flagged = set(out.loc[out["label_issue"].fillna(False).astype(bool), "image_id"])
        return len(flagged & moved) / len(moved), len(flagged & moved) / max(len(flagged), 1)

    on, m = labels.run(df, params(tmp_path / "data"), embeddings=emb, store_root=store)
    off, _ = labels.run(df, params(tmp_path / "data", labels={"colour_weight": 0}), embeddings=emb,
                        store_root=store)
    recall, precision = found(on)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision, m)
    assert m["probe_agreement"] >= 0.8 and m["colour_unread"] == 0
    assert found(off)[1] <= 0.2, found(off)  # noise knows no class: flags near everything
    broken = store / df["path"].iloc[0]
    broken.write_bytes(b"\xff\xd8\xff truncated")
    _, m2 = labels.run(df, params(tmp_path / "data"), embeddings=emb, store_root=store)
    assert m2["colour_unread"] == 1 and m2["judged"] == len(df)
