"""Split stage: group-aware, stratified, deterministic, stable across refreshes."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.stages import split
from tests.helpers import crop_manifest


def params(**kw):
    return load_params(None, {"split": kw}).split


def splits_of(out: pd.DataFrame) -> dict[str, str]:
    live = out[out["split"].notna()]
    return dict(zip(live["image_id"], live["split"], strict=True))


def test_products_and_duplicate_clusters_never_span_splits(tmp_path):
    df = crop_manifest(tmp_path, classes=3, products=30, write_images=False)
    # link products pairwise by a shared duplicate photo: (P0, P1), (P2, P3), ...
    for c in range(3):
        for p in range(0, 30, 2):
            a = df.index[(df["product_id"] == f"P{c:02d}-{p:03d}")][0]
            b = df.index[(df["product_id"] == f"P{c:02d}-{p + 1:03d}")][0]
            df.loc[b, "dup_cluster"] = df.loc[a, "dup_cluster"]
    out, _, _, m = split.assign_splits(df, params())
    per_product = out.groupby("product_id")["split"].nunique()
    assert (per_product == 1).all()
    per_cluster = out.groupby("dup_cluster")["split"].nunique()
    assert (per_cluster == 1).all()
    # the linked pairs form one group each
    assert m["groups"] == 3 * 15
    assert out.groupby("split_group")["product_id"].nunique().max() == 2


def test_stratified_ratios_per_class(tmp_path):
    df = crop_manifest(tmp_path, classes=5, products=40, per_product=3, write_images=False)
    out, _, _, m = split.assign_splits(df, params())
    table = split.class_table(out)
    share = table[["train", "val", "test"]].div(table["total"], axis=0)
    # groups are 3 images, so a class of 120 can be off by at most about one group
    assert ((share["train"] - 0.70).abs() <= 3 / 120 + 1e-9).all(), share
    assert ((share["val"] - 0.15).abs() <= 3 / 120 + 1e-9).all(), share
    assert ((share["test"] - 0.15).abs() <= 3 / 120 + 1e-9).all(), share
    assert m["share"]["train"] == pytest.approx(0.70, abs=0.01)


def test_two_way_split_and_determinism(tmp_path):
    df = crop_manifest(tmp_path, classes=3, products=20, write_images=False)
    p = params(train=0.8, val=0.2, test=0.0)
    a, _, _, _ = split.assign_splits(df, p)
    b, _, _, _ = split.assign_splits(df.sample(frac=1, random_state=1), p)  # row order does not matter
    assert set(a["split"].dropna()) == {"train", "val"}
    assert splits_of(a) == splits_of(b)
    c, _, _, _ = split.assign_splits(df, params(train=0.8, val=0.2, test=0.0, seed=43))
    assert splits_of(a) != splits_of(c)
    assert (a["split"] == "train").mean() == pytest.approx(0.8, abs=0.02)


def test_small_classes_and_unfinished_images_are_left_out_with_a_reason(tmp_path):
    df = crop_manifest(tmp_path, classes=3, products=10, write_images=False)
    small = df["label"] == "class02"
    df = df[~small | df["product_id"].isin(["P02-000", "P02-001"])].copy()  # 6 images
    df.loc[df.index[0], "needs_review"] = True
    df.loc[df.index[1], "crop_path"] = None
    out, _, _, m = split.assign_splits(df, params(min_images=10))
    assert (out.loc[out["label"] == "class02", "excluded_reason"] == "class_too_small").all()
    assert out.loc[df.index[0], "excluded_reason"] == "awaiting_review"
    assert out.loc[df.index[1], "excluded_reason"] == "no_crop"
    assert out.loc[out["excluded_reason"].notna(), "split"].isna().all()
    assert m["excluded"] == {"class_too_small": 6, "awaiting_review": 1, "no_crop": 1}
    # an annotator's accept clears needs_review upstream; with hold off they enter anyway
    out2, _, _, _ = split.assign_splits(df, params(min_images=10, hold_needs_review=False))
    assert out2.loc[df.index[0], "split"] in ("train", "val", "test")


def test_refresh_keeps_every_known_image_in_its_split(tmp_path):
    base = crop_manifest(tmp_path, classes=4, products=50, write_images=False)
    p = params()
    out1, ledger, images, _ = split.assign_splits(base, p)
    # a refresh: 10% new products in every class, 5% of the old ones gone
    new = crop_manifest(tmp_path, classes=4, products=5, write_images=False, prefix="N", seed=1)
    gone = base["product_id"].isin(base["product_id"].drop_duplicates().sample(10, random_state=0))
    refreshed = pd.concat([base[~gone], new], ignore_index=True)
    out2, _ledger2, _images2, m = split.assign_splits(refreshed, p, ledger, images)
    before, after = splits_of(out1), splits_of(out2)
    common = set(before) & set(after)
    assert len(common) == int((~gone).sum())
    assert all(before[i] == after[i] for i in common)
    assert m["kept_groups"] == 190 and m["new_groups"] == 20
    # the new groups corrected the ratios: still stratified
    share = (out2["split"] == "train").sum() / out2["split"].notna().sum()
    assert share == pytest.approx(0.70, abs=0.02)
    # the same refresh from scratch would have moved images: the ledger is what keeps them
    scratch, _, _, _ = split.assign_splits(refreshed, p)
    moved = sum(splits_of(scratch)[i] != before[i] for i in common)
    assert moved > 0


def test_groups_joined_by_a_refresh_take_the_most_held_out_split(tmp_path):
    df = crop_manifest(tmp_path, classes=1, products=40, write_images=False)
    out1, ledger, images, _ = split.assign_splits(df, params())
    s = splits_of(out1)
    by_product = out1.groupby("product_id")["split"].first()
    train_p = by_product[by_product == "train"].index[0]
    test_p = by_product[by_product == "test"].index[0]
    # a new photo in the train product duplicates a photo of the test product
    a = df.index[df["product_id"] == train_p][0]
    b = df.index[df["product_id"] == test_p][0]
    df2 = df.copy()
    df2.loc[a, "dup_cluster"] = df2.loc[b, "dup_cluster"]
    out2, _, _, m = split.assign_splits(df2, params(), ledger, images)
    joined = out2[out2["product_id"].isin([train_p, test_p])]
    assert set(joined["split"]) == {"test"}
    assert m["joined_groups"] == 1
    # no image ever moved from test to train
    after = splits_of(out2)
    assert not any(s[i] == "test" and after[i] == "train" for i in s)


def test_ledger_persists_and_resets_on_a_new_seed(tmp_path):
    df = crop_manifest(tmp_path, classes=2, products=20, write_images=False)
    led = split.Ledger(tmp_path)
    _, ledger, images, _ = split.assign_splits(df, params())
    led.stage(ledger, images, params())
    led.save()
    got, got_images = led.load(params())
    assert len(got) == len(ledger) and len(got_images) == len(images)
    fresh, none = led.load(params(seed=1))
    assert len(fresh) == 0 and none is None
    led.reset()
    assert not led.path.exists()


def test_label_level_parent_splits_and_stratifies_on_the_parents(tmp_path):
    df = crop_manifest(tmp_path, classes=4, products=20, write_images=False)
    classes = sorted(df["label"].unique())
    parents = {classes[0]: "stone-a", classes[1]: "stone-a", classes[2]: "stone-b"}  # 4th: none
    df["attr_parent_label"] = df["label"].map(parents).astype("string")
    by_class, _, _, _ = split.assign_splits(df, params())
    out, _, _, m = split.assign_splits(df, params(label_level="parent"))
    assert set(out["label"]) == {"stone-a", "stone-b", classes[3]}
    assert m["classes"] == 3
    assert out["attr_class_label"].tolist() == df["label"].tolist()
    table = split.class_table(out)
    assert table.loc["stone-a", "total"] == 2 * table.loc["stone-b", "total"]
    # products still never span splits, at either level
    assert (out.groupby("product_id")["split"].nunique() == 1).all()
    assert (by_class.groupby("product_id")["split"].nunique() == 1).all()


def test_a_label_issue_alone_trains_under_the_store_label_unless_labels_hold_out(tmp_path):
    df = crop_manifest(tmp_path, classes=3, products=10, write_images=False)
    only, both = df.index[0], df.index[1]
    df.loc[[only, both], "needs_review"] = True
    df.loc[only, "review_reason"] = "label_issue"
    df.loc[both, "review_reason"] = "label_issue;hand"
    flagged, _, _, _ = split.assign_splits(df, params())
    assert flagged.loc[only, "split"] in ("train", "val", "test")   # flagged for a person only
    assert flagged.loc[both, "excluded_reason"] == "awaiting_review"  # another doubt holds it
    held, _, _, _ = split.assign_splits(df, params(), hold_label_issues=True)
    assert held.loc[only, "excluded_reason"] == "awaiting_review"


def test_a_class_too_small_to_hold_out_trains_whole(tmp_path):
    """Under ``min_heldout_images`` a class trains whole (learnt, named in the metrics); under
    ``min_images`` it is left out. A group the ledger already holds out keeps its split."""
    df = crop_manifest(tmp_path, classes=3, products=10, write_images=False)  # 30 images a class
    keep = (df["label"] == "class00") | df["product_id"].isin([f"P01-00{i}" for i in range(3)]) \
        | (df["product_id"] == "P02-000")
    out, _, _, m = split.assign_splits(df[keep].copy(), params())  # class01: 9, class02: 3
    by = out.groupby("label")
    assert set(out.loc[out["label"] == "class01", "split"]) == {"train"}
    assert (out.loc[out["label"] == "class02", "excluded_reason"] == "class_too_small").all()
    assert set(by.get_group("class00")["split"]) == {"train", "val", "test"}
    assert m["train_only_classes"] == ["class01"]
    # the whole catalog first, then class01 shrinks below the bar: its groups keep their splits
    full, ledger, images, _ = split.assign_splits(df, params())
    again, _, _, _ = split.assign_splits(df[keep].copy(), params(), ledger=ledger, images=images)
    mine = again[again["label"] == "class01"]
    assert splits_of(mine) == {i: s for i, s in splits_of(full).items() if i in set(mine["image_id"])}
    assert set(mine["split"]) != {"train"}
