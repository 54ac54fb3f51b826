"""MediaPipe's hand models on ONNX Runtime: known answers on the storefront's truth, and the
shipped files' integrity."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.core.imageio import fit
from pipeline.models import handpose
from pipeline.stages import filter as filt
from pipeline.stages.filter.checks import hand as hand_check
from pipeline.synthetic import junk, worn
from pipeline.synthetic.gems import render_small_gem


def _at_400(rgb: np.ndarray) -> np.ndarray:
    return fit(rgb, 400) if max(rgb.shape[:2]) > 400 else rgb


@pytest.fixture(scope="module")
def rendered():
    rng = np.random.default_rng(7)
    return {"hand": [_at_400(junk.render_hand(rng, "ruby")) for _ in range(8)],
            "ring": [_at_400(worn.render_ring_product(rng, "sapphire")) for _ in range(8)],
            "gem": [_at_400(render_small_gem(rng, "emerald", 400)) for _ in range(8)]}


def test_anchors_follow_mediapipes_layout():
    a = handpose.anchors()
    assert a.shape == (2016, 2)
    # stride 8: 24 × 24 cells, two anchors each, row by row; then 12 × 12 cells, six each
    np.testing.assert_allclose(a[0], a[1])
    np.testing.assert_allclose(a[0], [0.5 / 24, 0.5 / 24], rtol=1e-6)
    np.testing.assert_allclose(a[2], [1.5 / 24, 0.5 / 24], rtol=1e-6)
    np.testing.assert_allclose(a[1152], [0.5 / 12, 0.5 / 12], rtol=1e-6)
    np.testing.assert_allclose(a[1152 + 6], [1.5 / 12, 0.5 / 12], rtol=1e-6)
    np.testing.assert_allclose(a[-1], [11.5 / 12, 11.5 / 12], rtol=1e-6)


def test_generated_hands_are_found_and_products_are_not(rendered):
    hands = [handpose.hand_presence(im) for im in rendered["hand"]]
    rings = [handpose.hand_presence(im) for im in rendered["ring"]]
    gems = [handpose.hand_presence(im) for im in rendered["gem"]]
    assert sum(p >= 0.7 for p in hands) >= 7, hands
    assert max(rings) < 0.3 and max(gems) < 0.3, (rings, gems)


def test_a_hand_turned_on_its_side_or_upside_down_is_still_a_hand(rendered):
    """The landmark crop is turned upright by the palm's keypoints, as MediaPipe does."""
    im = rendered["hand"][0]
    assert handpose.hand_presence(im) >= 0.7
    for turn in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180):
        assert handpose.hand_presence(np.ascontiguousarray(cv2.rotate(im, turn))) >= 0.7



def _fingers_only(im: np.ndarray) -> np.ndarray:
    """A close-up of the fingers: the top 55 % of the frame, its middle 60 %; the palm is out."""
    h, w = im.shape[:2]
    return np.ascontiguousarray(im[:int(h * 0.55), int(w * 0.2):int(w * 0.8)])


def test_a_close_up_whose_palm_is_out_of_the_frame_is_found_through_its_skin_region(rendered):
    """The palm detector has no palm to find; the skin region entering from the border,
    shown upright to the landmark model, is the hand (real close-ups of fingers wearing
    rings, or laid with loose stones, look like this)."""
    found = 0
    for i in (0, 3):
        close = _fingers_only(rendered["hand"][i])
        regions = hand_check.skin_regions(close)
        assert [r.borders for r in regions] == [("bottom",)]  # the fingers leave by the bottom
        assert handpose.hand_presence(close) < 0.3  # the palm route alone misses it
        found += handpose.hand_presence(close, regions) >= 0.7
    assert found == 2


def test_skin_regions_are_proposed_only_where_skin_enters_from_the_border(rendered):
    """A gem on white has no skin region; a ring on a beige backdrop has one (the backdrop)
    that the landmark model does not take for a hand."""
    assert all(hand_check.skin_regions(im) == [] for im in rendered["gem"])
    assert hand_check.skin_regions(np.full((300, 300, 3), 255, np.uint8)) == []
    disc = np.full((300, 300, 3), 255, np.uint8)
    cv2.circle(disc, (150, 150), 90, (224, 172, 140), -1)  # a skin-coloured stone, free of the border
    assert hand_check.skin_regions(disc) == []
    for im in rendered["ring"]:
        assert handpose.hand_presence(im, hand_check.skin_regions(im)) < 0.3


def test_a_region_is_looked_at_upright_for_each_border_it_leaves_by():
    r = handpose.Region(10, 10, 50, ("bottom",))
    np.testing.assert_allclose(r.rotations(), [0.0, -np.pi / 4, np.pi / 4])
    assert len(handpose.Region(10, 10, 50, ("bottom", "top")).rotations()) == 6
    every = handpose.Region(10, 10, 50, ("bottom", "left", "top", "right")).rotations()
    assert len(every) == 8  # each 45° turn once
    assert handpose.Region(10, 10, 50, ()).rotations() == []


def test_a_settled_palm_score_is_not_looked_at_again(rendered):
    """Where the palm route is sure (≥ SETTLED), the regions change nothing."""
    im = rendered["hand"][0]
    alone = handpose.hand_presence(im)
    assert alone >= handpose.SETTLED
    assert handpose.hand_presence(im, hand_check.skin_regions(im)) == alone

def test_deterministic_and_safe_on_odd_input(rendered):
    im = rendered["hand"][1]
    assert handpose.hand_presence(im) == handpose.hand_presence(im.copy())
    assert handpose.hand_presence(np.zeros((4, 300, 3), np.uint8)) == 0.0  # a sliver
    assert handpose.hand_presence(np.zeros((300, 300), np.uint8)) == 0.0  # not RGB
    assert handpose.hand_presence(np.full((300, 200, 3), 255, np.uint8)) < 0.1  # blank


def test_the_palm_crop_is_upright_for_an_upright_hand(rendered):
    """The hand region of the best palm holds the hand: more skin in it than in the frame."""
    im = rendered["hand"][2]
    canvas = handpose.letterbox(im, 1.6)
    palms = handpose.detect_palms(canvas)
    assert palms and palms[0].score >= 0.5
    crop = handpose.hand_crop(canvas, palms[0])
    assert crop.shape == (224, 224, 3)
    assert handpose.presence(crop) >= 0.7


def test_an_altered_model_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(handpose.WEIGHTS, tmp_path / "hands")
    monkeypatch.setattr(handpose, "WEIGHTS", tmp_path / "hands")
    handpose.source.cache_clear()
    try:
        path = tmp_path / "hands" / f"{handpose.PALM}.onnx"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(handpose.HandModelError, match="not the shipped file"):
            handpose.model_bytes(handpose.PALM)
        (tmp_path / "hands" / f"{handpose.LANDMARK}.onnx").unlink()
        with pytest.raises(handpose.HandModelError, match="missing"):
            handpose.model_bytes(handpose.LANDMARK)
        # a provenance record that is not JSON, or names no hash: refused, never trusted
        (tmp_path / "hands" / "SOURCE.json").write_text('{"models": {}}')
        handpose.source.cache_clear()
        with pytest.raises(handpose.HandModelError, match="names no sha256"):
            handpose.model_bytes(handpose.PALM)
        (tmp_path / "hands" / "SOURCE.json").write_text("<html>")
        handpose.source.cache_clear()
        with pytest.raises(handpose.HandModelError, match="unreadable"):
            handpose.model_bytes(handpose.PALM)
    finally:
        handpose.source.cache_clear()


def test_shipped_files_match_their_provenance_record():
    src = json.loads((handpose.WEIGHTS / "SOURCE.json").read_text())
    assert src["license"] == "Apache-2.0" and (handpose.WEIGHTS / "LICENSE").is_file()
    for name in (handpose.PALM, handpose.LANDMARK):
        data = (handpose.WEIGHTS / f"{name}.onnx").read_bytes()
        assert hashlib.sha256(data).hexdigest() == src["models"][name]["sha256"]


def test_the_hand_check_takes_the_pose_vote(rendered):
    """A sure pose makes a hand whatever the other cues say; none leaves them as they were."""
    from pipeline.stages.filter.checks import Image

    gem = rendered["gem"][0]
    plain = hand_check.Hand().score(Image(gem, gem.shape[1::-1]))
    assert hand_check.Hand().score(Image(gem, gem.shape[1::-1], hand_pose=0.0)) == plain
    assert hand_check.Hand().score(Image(gem, gem.shape[1::-1], hand_pose=0.95)) == 1.0
    lo, hi = hand_check.POSE_RAMP
    assert hand_check.Hand().score(Image(gem, gem.shape[1::-1], hand_pose=(lo + hi) / 2)) \
        == pytest.approx(max(plain, 0.5))
    # a head all but certain of a product clears the pose's vote (as it clears the shape cues)
    sure = {"product": 0.9999, "certificate": 0.0, "hand": 0.0001}
    unsure = {"product": 0.9, "certificate": 0.0, "hand": 0.1}
    assert hand_check.Hand().score(Image(gem, gem.shape[1::-1], junk_proba=sure, hand_pose=0.95)) < 0.05
    assert hand_check.Hand().score(Image(gem, gem.shape[1::-1], junk_proba=unsure, hand_pose=0.95)) == 1.0


def test_a_pose_the_landmark_model_is_all_but_sure_of_outweighs_a_doubtful_head(rendered):
    """Between the veto's two ends (the head at 0.4 %), a presence of 0.8 is cleared but
    0.97 counts: a wrist wearing a bracelet the head takes for a product is still a hand.
    Under the veto's floor nothing moves."""
    from pipeline.stages.filter.checks import Image

    gem = rendered["gem"][0]
    low = {"product": 0.996, "certificate": 0.0, "hand": 0.004}
    floor = {"product": 0.9995, "certificate": 0.0, "hand": 0.0005}
    hand = hand_check.Hand()
    assert hand.score(Image(gem, gem.shape[1::-1], junk_proba=low, hand_pose=0.97)) == 1.0
    assert hand.score(Image(gem, gem.shape[1::-1], junk_proba=low, hand_pose=0.8)) < 0.5
    assert hand.score(Image(gem, gem.shape[1::-1], junk_proba=floor, hand_pose=0.97)) < 0.05
    lo, hi = hand_check.POSE_SURE
    mid = hand.score(Image(gem, gem.shape[1::-1], junk_proba=low, hand_pose=(lo + hi) / 2))
    assert hand.score(Image(gem, gem.shape[1::-1], junk_proba=low, hand_pose=lo)) < mid < 1.0


def test_filter_stage_scores_pose_and_its_cache_knows_the_models(tmp_path, rendered):
    from pipeline.core.blobstore import BlobStore, sha256_hex

    store = BlobStore(tmp_path / "store")
    rows = []
    for kind in ("hand", "gem"):
        for k, im in enumerate(rendered[kind][:2]):
            _, buf = cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
            data = buf.tobytes()
            sha = sha256_hex(data)
            _, rel = store.put(data, "jpg", sha)
            rows.append((sha, str(tmp_path / "store" / rel), f"http://127.0.0.1/{kind}{k}.jpg"))
    on = load_params(None, {"filter": {"embedding": False, "workers": 1, "progress": False}}).filter
    off = load_params(None, {"filter": {"embedding": False, "hand_pose": False, "workers": 1,
                                        "progress": False}}).filter
    got = filt.score_all(rows, on, progress=False).set_index("image_id")
    assert (got["pose_hand"].iloc[:2] >= 0.7).all() and (got["pose_hand"].iloc[2:] < 0.3).all()
    assert (got["hand"].iloc[:2] == 1.0).all()
    plain = filt.score_all(rows, off, progress=False)
    assert "pose_hand" not in plain.columns
    assert set(handpose.model_files()) <= set(filt.code_files(on))
    assert not set(handpose.model_files()) & set(filt.code_files(off))
    # the models' own code is in the key too, not only the module the filter imports
    assert Path(handpose.__file__) in filt.code_files(on)
    assert Path(handpose.__file__) not in filt.code_files(off)
    table = filt.apply_scores(pd.DataFrame({"image_id": got.index, "excluded_reason": None}),
                              got.reset_index(), on)
    assert table["pose_hand"].notna().all()


def test_the_pose_is_skipped_only_where_it_cannot_count(rendered):
    """A head sure of a product, or the hand check off: no pose run, and no score moves."""
    p = load_params(None, {"filter": {"progress": False}}).filter
    sure = {"product": 0.9995, "certificate": 0.0, "hand": 0.0005}
    unsure = {"product": 0.98, "certificate": 0.0, "hand": 0.02}
    assert not filt.wants_pose(p, sure) and filt.wants_pose(p, unsure) and filt.wants_pose(p, None)
    off = load_params(None, {"filter": {"checks": {"hand": {"enabled": False}}}}).filter
    assert not filt.wants_pose(off, unsure)
    for im in rendered["hand"][:2] + rendered["ring"][:2]:
        with_pose = filt.score_image(im, im.shape[1::-1], "", p, junk_proba=sure,
                                     hand_pose=handpose.hand_presence(im))
        without = filt.score_image(im, im.shape[1::-1], "", p, junk_proba=sure)
        assert with_pose["hand"] == without["hand"]


def test_the_converter_stores_weights_in_half_precision_and_keeps_the_outputs(tmp_path):
    """scripts/convert_hand_models.py's float16 pass, on a small graph (tf2onnx not needed)."""
    import sys
    from pathlib import Path

    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from convert_hand_models import weights_to_float16

    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    b = rng.normal(size=(8,)).astype(np.float32)  # small: stays float32
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    x = rng.random((1, 3, 16, 16), dtype=np.float32)
    before = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    weights_to_float16(path)
    model = onnx.load(str(path))
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert kinds == {"w__f16": TensorProto.FLOAT16, "b": TensorProto.FLOAT}
    after = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, atol=1e-2)
    assert not np.array_equal(after, before)  # the weights really were rounded
