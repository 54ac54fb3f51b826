"""The filter stage: scores into flags, exclusions and review reasons; decisions; the cache."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.stages import filter as filt
from tests.helpers import stored_photos


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


def test_the_stage_scores_only_what_its_cache_lacks_and_writes_it_only_on_save(tmp_path):
    from pipeline.core.resultcache import ResultCache

    df = stored_photos(tmp_path)
    params = load_params(None, {"filter": {"workers": 1}})
    cache = ResultCache(tmp_path / "filter", params.filter, filt.CODE)
    out, m = filt.run(df, params, store_root=tmp_path / "store", cache=cache)
    assert m["images_scored"] == 4 and m["images_reused"] == 0
    bad = out.set_index("product_id").loc["PX"]
    assert bad["excluded_reason"] == "undecodable" and bad["excluded_detail"]
    assert not cache.rows_path.exists()
    cache.save()
    again, m2 = filt.run(df, params, store_root=tmp_path / "store",
                         cache=ResultCache(tmp_path / "filter", params.filter, filt.CODE))
    # the broken file is never cached: it is tried again
    assert m2["images_reused"] == 3 and m2["images_scored"] == 1
    cols = ["image_id", "excluded_reason", "hand_score", "certificate_score", "blurry_score"]
    pd.testing.assert_frame_equal(out[cols], again[cols])
    # other thresholds: another cache key, every image scored again
    other = load_params(None, {"filter": {"workers": 1, "checks": {"hand": {"threshold": 0.6}}}})
    _, m3 = filt.run(df, other, store_root=tmp_path / "store",
                     cache=ResultCache(tmp_path / "filter", other.filter, filt.CODE))
    assert m3["images_reused"] == 0


def test_a_new_check_is_one_class_and_runs_with_its_defaults():
    import numpy as np

    from pipeline.core.config import ConfigError
    from pipeline.stages.filter import checks

    @checks.register
    class Overexposed(checks.Check):
        name = "overexposed_test"
        threshold, review_band = 0.7, 0.05

        def score(self, image):
            return float((image.gray > 250).mean())

    try:
        p = load_params(None).filter
        got = p.enabled_checks(checks.REGISTRY)
        assert list(got)[-1] == "overexposed_test"
        assert (got["overexposed_test"].threshold, got["overexposed_test"].review_band) == (0.7, 0.05)
        s = filt.score_image(np.full((300, 300, 3), 255, np.uint8), (300, 300), "x.jpg", p)
        assert s["overexposed_test"] == 1.0
        off = load_params(None, {"filter": {"checks": {"overexposed_test": {"enabled": False}}}})
        assert "overexposed_test" not in off.filter.enabled_checks(checks.REGISTRY)
    finally:
        del checks.REGISTRY["overexposed_test"]
    with pytest.raises(ConfigError, match="no such check"):
        off.filter.enabled_checks(checks.REGISTRY)


def test_hand_policy_keep_tags_worn_products_instead_of_excluding_them():
    """A jewelry store's ring on a finger is its product photo: with ``hand_policy: keep`` the
    hand check tags it ``is_worn`` (trainers may filter on it), excludes nothing and sends
    nothing to review; a certificate is still junk. ``junk`` (the default) excludes it."""
    df = pd.DataFrame({
        "image_id": ["worn", "band", "cert", "plain"], "label": ["rings"] * 4,
        "excluded_reason": [None] * 4, "excluded_detail": [None] * 4,
        "needs_review": pd.array([False] * 4, dtype="boolean"),
        "review_reason": pd.array([None] * 4, dtype="string"),
    })
    zero = [0.0] * 4
    sc = pd.DataFrame({"image_id": df["image_id"], "certificate": [0.0, 0.0, 0.9, 0.0],
                       "hand": [0.9, 0.45, 0.0, 0.0], "blurry": zero, "too_small": zero,
                       "too_dark": zero, "too_bright": zero, "low_information": zero})
    junk = filt.apply_scores(df, sc, load_params(None).filter).set_index("image_id")
    assert junk.loc["worn", "excluded_reason"] == "hand" and junk.loc["band", "review_reason"] == "hand"
    assert junk["is_worn"].isna().all()
    keep = filt.apply_scores(df, sc, load_params(None, {"filter": {"hand_policy": "keep"}}).filter
                             ).set_index("image_id")
    assert keep["excluded_reason"].tolist() == [None, None, "certificate", None]
    assert keep["is_worn"].tolist() == [True, False, False, False]
    assert not keep["is_hand"].any() and not keep["needs_review"].any()
    with pytest.raises(Exception, match="hand_policy"):
        load_params(None, {"filter": {"hand_policy": "maybe"}})
