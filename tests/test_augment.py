"""Augment stage: exact balancing, rotations without cut-offs or black corners, lineage."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.stages import augment, split
from tests.helpers import crop_manifest

FILL = (200, 190, 180)


def stone_crop(size: int = 224, shape: str = "rect") -> tuple[np.ndarray, list[float]]:
    """An elongated stone filling the crop up to the 8% margin (the worst case for rotations)."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = FILL
    m = round(size * 0.08 / 1.16)
    if shape == "rect":
        cv2.rectangle(img, (m, m + 40), (size - m - 1, size - m - 41), (90, 20, 120), -1)
        box = [m, m + 40, size - m, size - m - 40]
    else:
        cv2.ellipse(img, (size // 2, size // 2), (size // 2 - m, size // 3), 0, 0, 360, (20, 90, 30), -1)
        box = [m, size // 2 - size // 3, size - m, size // 2 + size // 3]
    return img, [float(v) for v in box]


def object_mask(img: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(int) - np.array(FILL)).max(2) > 30


@pytest.mark.parametrize("angle", [0, 45, 90, 135, 180, 225, 270, 315])
@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize("shape", ["rect", "ellipse"])
def test_rotations_keep_the_whole_stone_and_leave_no_black_corners(angle, mirror, shape):
    img, box = stone_crop(shape=shape)
    out = augment.apply_transform(img, {"rotate": angle, "mirror": mirror}, FILL, box)
    assert out.shape == img.shape
    obj = object_mask(out)
    # the stone is whole: nothing of it on the border, its area kept (up to the 45° shrink)
    assert not obj[0].any() and not obj[-1].any() and not obj[:, 0].any() and not obj[:, -1].any()
    ratio = obj.sum() / object_mask(img).sum()
    assert 0.45 <= ratio <= 1.02, ratio
    # no black (or any non-background) corners: the corner patches are the fill colour
    k = 12
    for patch in (out[:k, :k], out[:k, -k:], out[-k:, :k], out[-k:, -k:]):
        assert np.abs(patch.astype(int) - np.array(FILL)).max() <= 2
    assert (out.max(2) > 40).all(), "no near-black pixels anywhere (the stone is not dark)"


def test_mirror_and_90_degree_rotation_are_exact():
    img, box = stone_crop(shape="ellipse")
    img[30:40, 100:110] = (255, 0, 0)  # a marker
    m = augment.apply_transform(img, {"rotate": 0, "mirror": True}, FILL, box)
    assert np.array_equal(m, img[:, ::-1])
    r = augment.apply_transform(img, {"rotate": 90, "mirror": False}, FILL, box)
    # counter-clockwise by 90°: equal to np.rot90 up to interpolation at the edges
    assert np.abs(r.astype(int) - np.rot90(img).astype(int)).mean() < 2.0


def test_extra_transforms_are_drawn_first_and_recorded():
    p = load_params(None, {"augment": {"extra": {"shift": 0.1, "brightness": 0.2}}}).augment
    rng = np.random.default_rng(0)
    t = augment.draw_extra(p.extra, rng)
    assert set(t) == {"shift", "brightness"}
    img, box = stone_crop()
    a = augment.apply_transform(img, {"rotate": 0, **t}, FILL, box)
    b = augment.apply_transform(img, {"rotate": 0, **t}, FILL, box)
    assert np.array_equal(a, b) and not np.array_equal(a, img)
    assert augment.draw_extra(load_params(None).augment.extra, rng) == {}


def split_manifest(tmp_path, **kw):
    df = crop_manifest(tmp_path / "data", **kw)
    out, _, _, _ = split.assign_splits(df, load_params(None).split)
    out["parent_id"] = None
    out["transform"] = None
    return out


def test_every_class_lands_exactly_on_the_target(tmp_path):
    df = split_manifest(tmp_path, classes=3, products=12, per_product=3)
    p = load_params(None, {"augment": {"target_per_class": 100, "workers": 1}})
    out, m = augment.run(df, p, data_dir=tmp_path / "data")
    train = out[out["split"] == "train"]
    assert train["label"].value_counts().to_dict() == {f"class{c:02d}": 100 for c in range(3)}
    assert m["variants"] == 300 - int((df["split"] == "train").sum())
    var = out[out["parent_id"].notna()]
    # lineage: variants are train only, their parents are train photos, ids unique
    assert set(var["split"]) == {"train"}
    parents = out.set_index("image_id").loc[var["parent_id"]]
    assert (parents["split"] == "train").all() and (parents["label"].values == var["label"].values).all()
    assert out["image_id"].is_unique
    # spread evenly: every photo of a class gets ⌊t/n⌋ or ⌈t/n⌉ images (itself included)
    per_parent = var.groupby("parent_id").size()
    assert per_parent.max() - per_parent.min() <= 1
    # transforms are JSON, distinct per parent, and the files exist
    tr = var["transform"].map(json.loads)
    assert all(set(t) == {"rotate", "mirror"} for t in tr)
    assert not var.assign(t=var["transform"]).duplicated(["parent_id", "t"]).any()
    assert all((tmp_path / "data" / pth).exists() for pth in var["image_path"])


def test_variants_copy_the_dataset_row_not_a_stale_twin(tmp_path):
    """The same bytes at a URL that is gone (a host move) share the photo's image_id;
    the variants must describe the live train row, wherever the stale row sorts."""
    df = split_manifest(tmp_path, classes=2, products=8, per_product=2)
    train = df[df["split"] == "train"]
    stale = train.copy()
    stale[["split", "image_path"]] = None
    stale["excluded_reason"] = "removed_from_catalog"
    moved = "http://127.0.0.1:8001"  # the store's old address
    stale["source_url"] = stale["source_url"].str.replace("http://127.0.0.1:8000", moved, regex=False)
    df = pd.concat([stale, df], ignore_index=True)  # stale rows first
    p = load_params(None, {"augment": {"target_per_class": 40, "workers": 1}})
    out, _ = augment.run(df, p, data_dir=tmp_path / "data")
    var = out[out["parent_id"].notna()]
    assert len(var) and var["excluded_reason"].isna().all()
    assert not var["source_url"].str.startswith(moved).any()
    ds = out[out["split"].notna() & out["excluded_reason"].isna()]
    assert (ds[ds["split"] == "train"]["label"].value_counts() == 40).all()


def test_classes_above_target_are_capped_and_short_classes_reported(tmp_path):
    df = split_manifest(tmp_path, classes=2, products=30, per_product=2)
    # class01 keeps 3 train photos only: 16 variants each cannot reach the target
    c1 = df.index[(df["label"] == "class01") & (df["split"] == "train")]
    df.loc[c1[3:], ["split", "image_path"]] = None
    df.loc[c1[3:], "excluded_reason"] = "duplicate"
    p = load_params(None, {"augment": {"target_per_class": 20, "workers": 1}})
    out, m = augment.run(df, p, data_dir=tmp_path / "data")
    train = out[out["split"] == "train"]["label"].value_counts()
    assert train["class00"] == 20                      # capped by sampling
    assert (out["excluded_reason"] == "over_target").sum() == int(
        ((df["label"] == "class00") & (df["split"] == "train")).sum()) - 20
    assert train["class01"] == 20                      # 3 photos × up to 16 variants = 48 ≥ 20
    p2 = load_params(None, {"augment": {"target_per_class": 60, "workers": 1}})
    _, m2 = augment.run(df, p2, data_dir=tmp_path / "data")
    assert m2["short_of_target"] == {"class01": 60 - 48}
    assert m["capped"] > 0


def test_plan_is_deterministic_and_seeded(tmp_path):
    df = split_manifest(tmp_path, classes=2, products=10, per_product=2, write_images=False)
    p = load_params(None, {"augment": {"target_per_class": 50}}).augment
    a, _, _ = augment.plan(df, p)
    b, _, _ = augment.plan(df.sample(frac=1, random_state=3), p)
    key = ["parent_id", "image_id"]
    def norm(x):
        return x.sort_values(key)[key].reset_index(drop=True)

    assert norm(a).equals(norm(b))
    c, _, _ = augment.plan(df, load_params(None, {"augment": {"target_per_class": 50, "seed": 8}}).augment)
    assert set(a["image_id"]) != set(c["image_id"])
    assert isinstance(a, pd.DataFrame)


def test_augmentation_off_still_writes_its_output_folder(tmp_path):
    """rotation_step 360 and no mirror: nothing to add, yet `data/augment` (a DVC output)
    exists, so `dvc repro` does not fail with "output 'data/augment' does not exist"."""
    from pipeline.core.manifest import manifest_path, write_manifest

    data = tmp_path / "data"
    df = split_manifest(tmp_path, classes=2, products=6, per_product=2)
    write_manifest(df, manifest_path(data, "split"))
    p = load_params(None, {"augment": {"rotation_step": 360, "mirror": False, "workers": 1},
                           "data": {"data_dir": str(data)}})
    m = augment.main(p, progress=False)
    assert m["variants"] == 0 and (data / "augment").is_dir()


def test_the_synthetic_share_of_a_small_class_can_be_capped(tmp_path):
    df = split_manifest(tmp_path, classes=2, products=6, per_product=2)
    p = load_params(None, {"augment": {"target_per_class": 100, "max_variants_per_photo": 2,
                                       "workers": 1}})
    var, _, per_class = augment.plan(df, p.augment)
    for c in per_class.values():
        assert c["variants"] == 2 * c["originals"] and c["short_of_target"] == 100 - 3 * c["originals"]
    assert var.groupby("parent_id").size().max() == 2
    assert p.augment.images_per_photo() == 3
