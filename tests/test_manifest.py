import os

import pandas as pd
import pytest

from pipeline.core import manifest as m


def raw_row(**kw):
    iid = kw.get("image_id", "a" * 64)
    row = dict(image_id=iid, path=f"{iid[:2]}/{iid[2:4]}/{iid}.jpg", label="ruby", product_id="P1",
               site="demo",
               source_url="http://127.0.0.1/x.jpg", product_url="http://127.0.0.1/p/P1",
               image_index=0, fetched_at="2026-01-01T00:00:00Z", width=10, height=12,
               format="JPEG", n_bytes=100, content_type="image/jpeg", etag='"e"',
               excluded_reason=None, excluded_detail=None, status="active", change="added",
               first_seen_run=1, last_seen_run=1)
    row.update(kw)
    return row


def test_derived_names_follow_one_rule():
    assert m.score_col("certificate") == "certificate_score"
    assert m.flag_col("hand") == "is_hand"
    assert m.attr_col("Carat Weight") == "attr_carat_weight"
    with pytest.raises(ValueError):
        m.score_col("Bad-Name")


def test_every_derived_name_has_a_declaration():
    for name in (m.score_col("blurry"), m.flag_col("blurry"), m.attr_col("price"), "needs_review"):
        assert m.column_for(name) is not None


def test_conform_casts_declared_types():
    df = m.conform(pd.DataFrame([raw_row(), raw_row(image_id="b" * 64, width=None)]), "raw")
    assert str(df["width"].dtype) == "Int64" and df["width"].isna().sum() == 1
    assert str(df["fetched_at"].dtype) == m.TIMESTAMP
    assert list(df.columns[:3]) == ["image_id", "path", "label"]


def test_conform_rejects_missing_and_null_columns():
    bad = pd.DataFrame([raw_row()]).drop(columns=["label"])
    with pytest.raises(m.ManifestError, match=r"lacks required column.*label"):
        m.conform(bad, "raw")
    with pytest.raises(m.ManifestError, match="column product_id: 1 null"):
        m.conform(pd.DataFrame([raw_row(product_id=None)]), "raw")


def test_the_crawls_bookkeeping_stays_in_the_raw_manifest():
    """``change`` and the run counters differ after every refresh, even of an unchanged store:
    the raw manifest needs them, later manifests leave them out (else every stage reruns)."""
    crawl = ["change", "first_seen_run", "last_seen_run"]
    seen_twice = pd.DataFrame([raw_row(change="unchanged", last_seen_run=2)])
    raw = m.conform(seen_twice, "raw")
    assert set(crawl) <= set(m.required_columns("raw")) and raw.loc[0, "last_seen_run"] == 2
    with pytest.raises(m.ManifestError, match=r"lacks required column.*change"):
        m.conform(seen_twice.drop(columns=["change"]), "raw")
    later = seen_twice.assign(dup_cluster="a" * 64, dup_size=1, is_representative=True,
                              label_original="ruby", dup_of=None, pixel_sha256="c" * 64,
                              phash="0" * 16, dhash="0" * 16, needs_review=False, review_reason=None)
    out = m.conform(later, "dedupe")
    assert not set(crawl) & set(out.columns) and not set(crawl) & set(m.required_columns("split"))
    assert sorted(m.not_carried("dedupe")) == sorted(crawl) and m.not_carried("raw") == []
    # a refresh that saw the same image: the same dedupe rows, byte for byte
    first = m.conform(later.assign(change="added", last_seen_run=1), "dedupe")
    pd.testing.assert_frame_equal(out, first)


def test_write_is_atomic_and_roundtrips(tmp_path):
    df = m.conform(pd.DataFrame([raw_row()]), "raw")
    path = m.manifest_path(tmp_path, "raw")
    m.write_manifest(df, path)
    back = m.read_manifest(path)
    pd.testing.assert_frame_equal(back, df)
    assert os.listdir(path.parent) == ["raw.parquet"]  # no temporary file left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "raw.parquet"
    m.write_manifest(m.conform(pd.DataFrame([raw_row()]), "raw"), path)
    before = path.read_bytes()
    with pytest.raises((TypeError, ValueError, OSError, ArithmeticError, LookupError)):
        m.write_manifest(pd.DataFrame({"x": [object()]}), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["raw.parquet"]


def test_missing_manifest_message(tmp_path):
    with pytest.raises(m.ManifestError, match="has the previous stage run"):
        m.read_manifest(tmp_path / "nope.parquet")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("path", "../../outside.jpg", "column path: row 0"),
    ("path", "/etc/passwd", "column path: row 0"),
    ("path", "aa/aa/" + "b" * 64 + ".jpg", "column path: row 0"),   # another image's bytes
    ("path", "aa/aa/" + "a" * 64 + ".j/../../x", "column path: row 0"),
    ("image_id", "/../../../../any/dir/x", "column image_id: 1 value"),
    ("image_id", "A" * 64, "column image_id: 1 value"),
])
def test_a_crafted_manifest_cannot_choose_paths(field, value, message):
    row = raw_row()
    row[field] = value
    if field == "image_id":
        row["path"] = None
    df = pd.DataFrame([row])
    with pytest.raises(m.ManifestError, match=message):
        m.check_identity(df)
    with pytest.raises(m.ManifestError):
        m.conform(df, "raw")


def test_crop_and_dataset_paths_follow_the_image_id():
    a, b = "a" * 64, "b" * 64
    ok = pd.DataFrame({"image_id": [a, b], "parent_id": [None, a],
                       "path": [f"aa/aa/{a}.jpg", f"aa/aa/{a}.jpg"],   # a variant: its parent's photo
                       "crop_path": [f"aa/{a}.png", f"aa/{a}.png"],
                       "image_path": [f"crops/aa/{a}.png", f"augment/bb/{b}.png"]})
    m.check_identity(ok)
    for col, value in (("crop_path", "../../../tmp/x.png"), ("image_path", "augment/../../x.png"),
                       ("image_path", f"crops/bb/{b}.png"), ("parent_id", "../x")):
        bad = ok.copy()
        bad.loc[1, col] = value
        with pytest.raises(m.ManifestError, match=f"column {col}"):
            m.check_identity(bad)
