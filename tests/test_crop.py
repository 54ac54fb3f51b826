"""The crop: find_box and cut alone on generated photos with known boxes, then the stage."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.core.config import CropParams
from pipeline.demo.scoring import iou
from pipeline.stages import crop
from pipeline.stages.crop import cut, find_box
from tests.helpers import gem_photo


@pytest.mark.parametrize("bg", ["white", "grey", "gradient", "radial"])
def test_crop_finds_the_stone_despite_background_shadow_and_reflection(bg):
    ious = []
    for k in range(8):
        img, plan = gem_photo(20 + k, bg_kind=bg, shadow=(0.1, 0.2, 0.4), reflection=0.3 if k % 2 else 0.0)
        res = find_box(img, CropParams())
        ious.append(iou(res.object_box, plan.bbox()))
    assert np.median(ious) >= 0.85, ious


def test_crop_flags_empty_cut_and_several():
    p = CropParams()
    assert find_box(np.full((300, 300, 3), 240, np.uint8), p).issue == "no_object"
    img, _plan = gem_photo(40, width=600, height=600, cx=20.0, cy=300.0, radius=150.0, reflection=0.0)
    assert find_box(img, p).issue == "cut_by_border"
    # cropped tight by the store: the stone grazes the frame, the frame does not cut it
    for cx, issue in ((100, "none"), (101, "none"), (60, "cut_by_border")):
        disc = np.full((400, 400, 3), 245, np.uint8)
        cv2.circle(disc, (cx, 200), 100, (150, 40, 60), -1, cv2.LINE_AA)
        res = find_box(disc, p)
        assert res.object_box[0] == 0 and res.issue == issue, (cx, res)
    a, _ = gem_photo(41, width=800, height=400, cx=180.0, cy=200.0, radius=110.0, reflection=0.0,
               bg_kind="white", shadow=(0, 0, 0))
    b, _ = gem_photo(42, width=800, height=400, cx=620.0, cy=200.0, radius=110.0, reflection=0.0,
               bg_kind="white", shadow=(0, 0, 0))
    two = np.minimum(a, b)
    res = find_box(two, p)
    assert res.issue == "several_objects" and res.confidence < p.min_confidence


def test_cut_pads_with_the_background_colour():
    img = np.zeros((100, 100, 3), np.uint8)
    out = cut(img, [-50, -50, 150, 150], 64, (10, 20, 30))
    assert out.shape == (64, 64, 3)
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[32, 32]) == (0, 0, 0)


def test_the_stage_writes_crops_flags_a_broken_file_and_reuses_its_cache(tmp_path):
    import pandas as pd

    from pipeline.core.config import load_params
    from pipeline.core.resultcache import ResultCache
    from pipeline.stages import crop
    from tests.helpers import stored_photos

    df = stored_photos(tmp_path, n=3)
    params = load_params(None, {"crop": {"workers": 1}})
    crops = tmp_path / "crops"
    cache = ResultCache(tmp_path / "crop", params.crop, crop.CODE)
    out, m = crop.run(df, params, store_root=tmp_path / "store", crops_dir=crops, cache=cache)
    by = out.set_index("product_id")
    assert by.loc["PX", "crop_issue"] == "undecodable" and by.loc["PX", "needs_review"]
    assert "crop_undecodable" in by.loc["PX", "review_reason"]
    ok = by.drop("PX")
    assert ok["crop_path"].notna().all() and all((crops / c).exists() for c in ok["crop_path"])
    assert m["cropped"] == 3
    cache.save()
    again, m2 = crop.run(df, params, store_root=tmp_path / "store", crops_dir=crops,
                         cache=ResultCache(tmp_path / "crop", params.crop, crop.CODE))
    assert m2["images_reused"] == 3
    pd.testing.assert_series_equal(out["crop_path"], again["crop_path"])


def _granite(rng: np.random.Generator, h: int, w: int, level: float) -> np.ndarray:
    """A grey, grainy backdrop (fabric or granite): strong grain, a slow gradient."""
    import cv2

    grain = cv2.GaussianBlur(rng.normal(0, 35, (h, w)).astype(np.float32), (0, 0), 1.0) * 2
    ramp_ = np.linspace(-15, 15, h)[:, None, None]
    return np.clip(level + grain[..., None] + ramp_ + rng.normal(0, 4, (h, w, 3)), 0, 255)


def test_a_pearl_on_grainy_fabric_is_found_without_its_shadow():
    """The border's grain sets the tolerance, a plane models the backdrop (a quadratic
    fitted to a noisy border bulges over the middle), and the white pearl is not taken
    for a lamp's glow."""
    rng = np.random.default_rng(3)
    h = w = 300
    img = _granite(rng, h, w, 115)
    yy, xx = np.mgrid[:h, :w]
    shadow = ((xx - 150) ** 2 + (yy - 185) ** 2) < 75 ** 2
    img[shadow] *= 0.55  # a cast shadow below and right, with the backdrop's grain
    pearl = ((xx - 145) ** 2 + (yy - 150) ** 2) < 70 ** 2
    shade = np.clip(1.05 - ((xx - 125) ** 2 + (yy - 125) ** 2) / (2.2 * 70 ** 2), 0.75, 1.05)
    img[pearl] = (np.array([248, 246, 240]) * shade[pearl][:, None])
    res = find_box(img.astype(np.uint8), CropParams())
    assert res.issue == "none"
    assert iou(res.object_box, [75, 80, 215, 220]) >= 0.85


def test_a_deep_warm_shadow_on_dark_fabric_is_no_part_of_the_pearl():
    """On a dark backdrop a shadow is a few levels deep, and a warm tint of a few levels
    (real shadows on dark fabric: 31, 20, 24 against 101, 99, 100) moves its channels'
    ratios by more than the 6 % a shadow is allowed on a light one; the shadow's noise
    allowance keeps it a shadow (the box would run 30 px on into it)."""
    import cv2

    ious = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        h = w = 300
        img = _granite(rng, h, w, 60)
        yy, xx = np.mgrid[:h, :w]
        shadow = ((xx - 150) ** 2 + (yy - 185) ** 2) < 75 ** 2
        img[shadow] = img[shadow] * 0.4 + np.array([5.0, -3.0, -2.0])
        pearl = ((xx - 145) ** 2 + (yy - 150) ** 2) < 70 ** 2
        shade = np.clip(1.05 - ((xx - 125) ** 2 + (yy - 125) ** 2) / (2.2 * 70 ** 2), 0.75, 1.05)
        img[pearl] = (np.array([248, 246, 240]) * shade[pearl][:, None])
        _, buf = cv2.imencode(".jpg", img.clip(0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        res = find_box(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), CropParams())
        ious.append(iou(res.object_box, [75, 80, 215, 220]))
    assert min(ious) >= 0.93, ious


def test_a_stone_that_fills_the_frame_is_its_own_crop():
    """Facets reach every edge: no border is backdrop, and the whole frame is the object."""
    rng = np.random.default_rng(5)
    h, w = 240, 260
    img = np.zeros((h, w, 3), np.uint8)
    for _ in range(60):  # large facets of a green stone, bright and dark
        pts = rng.integers(-40, 300, (3, 2)).astype(np.int32)
        import cv2

        cv2.fillPoly(img, [pts], tuple(int(v) for v in rng.integers(10, 250) * np.array([0.3, 1.0, 0.5])))
    res = find_box(img, CropParams())
    assert res.issue == "fills_frame" and res.object_box == [0, 0, w, h]
    assert res.confidence >= CropParams().min_confidence  # a usable crop, not a review


def test_a_reflection_is_cut_where_the_stone_ends_not_where_its_darker_rows_begin():
    """A stone's row profile: a bright crown (70 rows), a darker pavilion (30 rows at 60 %),
    then a faint mirror image (40 rows). Its pavilion passes the mirror test too when the
    split is put above it; the split is where the stone ends."""
    rows = np.concatenate([np.full(70, 100.0), np.full(30, 60.0), np.linspace(18.0, 8.0, 40)])
    assert crop.reflection_split(rows) == 100
    # no reflection: a stone whose lower half is darker keeps all its rows
    assert crop.reflection_split(np.concatenate([np.full(70, 100.0), np.full(50, 60.0)])) is None


def test_full_mode_keeps_the_whole_photo_and_waits_for_nobody(tmp_path):
    """crop.mode full: every readable photo becomes the whole photo on a padded square (a
    necklace that the frame cuts is not sent to an annotator); the box is still recorded."""
    import cv2

    from pipeline.core.blobstore import BlobStore
    from pipeline.core.config import load_params
    from pipeline.core.cropbox import photo_input
    from pipeline.stages import crop
    from tests.helpers import stored_photos

    df = stored_photos(tmp_path, n=2)
    store = BlobStore(tmp_path / "store")
    wide = np.full((120, 300, 3), 240, np.uint8)
    cv2.rectangle(wide, (0, 40), (200, 80), (30, 60, 160), -1)  # a piece the left edge cuts
    iid, rel = store.put(cv2.imencode(".png", wide[..., ::-1])[1].tobytes(), "png")
    import pandas as pd

    row = df.iloc[[0]].copy()
    row["image_id"], row["path"], row["product_id"] = iid, rel, "PW"
    df = pd.concat([df, row], ignore_index=True)
    boxed, _ = crop.run(df, load_params(None, {"crop": {"workers": 1, "cut_by_border": "review"}}),
                        store_root=tmp_path / "store", crops_dir=tmp_path / "c1")
    p = load_params(None, {"crop": {"workers": 1, "mode": "full", "target_size": 150}})
    full, _ = crop.run(df, p, store_root=tmp_path / "store", crops_dir=tmp_path / "c2")
    b, f = boxed.set_index("product_id"), full.set_index("product_id")
    assert b.loc["PW", "needs_review"] and pd_isna(b.loc["PW", "crop_path"])
    assert not f.loc["PW", "needs_review"] and f.loc["PW", "crop_box"] == [0, -90, 300, 210]
    assert f.loc["PX", "needs_review"]  # an unreadable file still waits
    got = cv2.imread(str(tmp_path / "c2" / f.loc["PW", "crop_path"]))[..., ::-1]
    assert got.shape == (150, 150, 3)
    assert np.abs(got[75, 5].astype(int) - (30, 60, 160)).max() < 12  # the cut piece is there
    assert np.abs(got[5, 75].astype(int) - (240, 240, 240)).max() < 12  # padded with the backdrop
    # a photo from outside is cut the same way
    img, notes = photo_input(cv2.imencode(".png", wide[..., ::-1])[1].tobytes(), p.crop, 150)
    assert not notes["cropped"] and np.abs(img.astype(int) - got.astype(int)).mean() < 2


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))
