"""Dedupe: the decision rule and the clustering with known answers, then the stage on real
files with its fingerprint cache (staged by run(), written by main() only)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from pipeline.core.blobstore import BlobStore
from pipeline.core.config import load_params
from pipeline.stages import dedupe
from tests.helpers import encode, gem_photo, raw_manifest

P = load_params(None).dedupe


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_the_decision_rule():
    pairs = pd.DataFrame({"phash_dist": [0, 6, 6, 6], "dhash_dist": [0, 5, 5, 5],
                          "similarity": [np.nan, 0.95, 0.80, 0.95],
                          "colour_dist": [1.0, 2.0, 2.0, 30.0]})
    # certain by both hashes; confirmed by detail; too little detail; another colour
    assert dedupe.is_duplicate(pairs, P).tolist() == [True, True, False, False]


def test_clusters_representatives_and_label_conflicts_known_answer():
    a, c, d, e, f, g = (sha(x) for x in "acdefg")
    df = raw_manifest([(a, "ruby", "P1", 800), (a, "ruby", "P2", 800),   # the same bytes at two URLs
              (c, "ruby", "P3", 1200),                          # the same pixels, larger file
              (d, "ruby", "P4", 600),                           # a near copy of a
              (e, "opal", "P5", 800), (f, "jade", "P6", 800),   # near copies, other labels
              (g, "opal", "P7", 800)])                          # nothing like the others
    hashes = pd.DataFrame({"image_id": [a, c, d, e, f, g],
                           "pixel_sha256": ["pa", "pa", "pd", "pe", "pf", "pg"],
                           "phash": [1, 1, 3, 4, 5, 6], "dhash": [1, 1, 3, 4, 5, 6],
                           "width": 800, "height": 800, "thumb": b"", "colour": b"", "error": None})
    pairs = pd.DataFrame({"a": [a, e], "b": [d, f], "phash_dist": [4, 4], "dhash_dist": [4, 4],
                          "similarity": [0.97, 0.96], "colour_dist": [1.0, 1.0]})
    out = dedupe.cluster(df, hashes, pairs, P)
    by_pid = out.set_index("product_id")
    assert by_pid.loc[["P1", "P2", "P3", "P4"], "dup_cluster"].nunique() == 1
    assert by_pid.loc["P1", "dup_size"] == 4
    # the representative: highest resolution
    assert by_pid.loc["P3", "is_representative"] and not by_pid.loc["P1", "is_representative"]
    assert by_pid.loc[["P1", "P2", "P4"], "excluded_reason"].eq("duplicate").all()
    assert by_pid.loc["P1", "excluded_detail"].startswith("identical pixels of ")
    assert by_pid.loc["P4", "excluded_detail"].startswith("near duplicate of ")
    # differently labelled duplicates wait for a person, both of them
    assert by_pid.loc[["P5", "P6"], "excluded_reason"].eq("label_conflict").all()
    assert by_pid.loc[["P5", "P6"], "needs_review"].all()
    assert by_pid.loc["P5", "excluded_detail"] == "duplicates labelled jade / opal"
    assert pd.isna(by_pid.loc["P7", "excluded_reason"]) and by_pid.loc["P7", "is_representative"]
    # the cluster id is stable: the smallest image_id in it
    assert by_pid.loc["P1", "dup_cluster"] == min(a, c, d)


def test_an_undecodable_file_keeps_its_row_with_the_reason():
    a, b = sha("a"), sha("b")
    df = raw_manifest([(a, "ruby", "P1", 800), (b, "ruby", "P2", 800)])
    hashes = pd.DataFrame({"image_id": [a, b], "pixel_sha256": ["pa", None], "phash": [1, None],
                           "dhash": [1, None], "width": [800, None], "height": [800, None],
                           "thumb": [b"", None], "colour": [b"", None],
                           "error": [None, "cannot identify image file"]})
    out = dedupe.cluster(df, hashes.astype({"phash": "Int64", "dhash": "Int64"}),
                         pd.DataFrame(columns=dedupe.PAIR_COLUMNS), P).set_index("product_id")
    assert out.loc["P2", "excluded_reason"] == "undecodable"
    assert "cannot identify" in out.loc["P2", "excluded_detail"] and len(out) == 2


@pytest.fixture
def stored(tmp_path):
    """Four real photos in an image store: two copies of one (re-encoded) and two others."""
    store = BlobStore(tmp_path / "store")
    img0, _ = gem_photo(0)
    img1, _ = gem_photo(5)
    img2, _ = gem_photo(9)
    rows = []
    for k, (data, label) in enumerate([(encode(img0, q=92), "ruby"), (encode(img0, q=80), "ruby"),
                                       (encode(img1), "opal"), (encode(img2), "jade")]):
        iid, _ = store.put(data, "jpg")  # stored at ab/cd/<sha>.jpg, as raw_manifest() names it
        rows.append((iid, label, f"P{k}", 0))
    return raw_manifest(rows), tmp_path


def test_the_stage_finds_the_copy_and_writes_its_cache_only_when_main_saves(stored):
    df, tmp = stored
    params = load_params(None, {"dedupe": {"workers": 1}})
    cache = dedupe.HashCache(tmp / "data")
    out, m = dedupe.run(df, params, store_root=tmp / "store", cache=cache)
    assert m["fingerprinted"] == 4 and m["excluded_duplicates"] == 1
    assert out.set_index("product_id").loc[["P0", "P1"], "dup_cluster"].nunique() == 1
    assert not cache.hashes_path.exists()  # run() computes; only save() writes
    cache.save()
    again, m2 = dedupe.run(df, params, store_root=tmp / "store", cache=dedupe.HashCache(tmp / "data"))
    assert m2["fingerprinted"] == 0 and m2["new_candidate_pairs"] == 0
    cols = ["image_id", "dup_cluster", "is_representative", "excluded_reason"]
    pd.testing.assert_frame_equal(out[cols], again[cols])


def test_the_store_listing_order_changes_no_comparison_and_no_cluster(stored):
    """The alignment behind a pair's similarity is not symmetric: a pair is always compared
    with the smaller image id first, so a store listing (or a crawl finishing) its photos in
    another order gets the same pairs, scores and clusters."""
    df, tmp = stored
    params = load_params(None, {"dedupe": {"workers": 1}})
    got = {}
    for name, rows in (("listed", df), ("reversed", df.iloc[::-1].reset_index(drop=True))):
        cache = dedupe.HashCache(tmp / name)
        out, _ = dedupe.run(rows, params, store_root=tmp / "store", cache=cache)
        cache.save()
        pairs = pd.read_parquet(cache.pairs_path)
        assert len(pairs) and (pairs["a"] < pairs["b"]).all()
        got[name] = (out.sort_values("image_id")[["image_id", "dup_cluster", "is_representative"]]
                     .reset_index(drop=True), pairs.sort_values(["a", "b"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(got["listed"][0], got["reversed"][0])
    pd.testing.assert_frame_equal(got["listed"][1], got["reversed"][1])


def test_shard_fingerprints_count_as_new_and_broken_or_foreign_shards_cost_only_time(stored):
    """``dedupe --shard`` fingerprints land in ``dedupe/shards/``; the full run searches them like
    new images (the copy is found), computes nothing twice, and removes the files."""
    df, tmp = stored
    params = load_params(None, {"dedupe": {"workers": 1}})
    data = tmp / "data"
    (data / "manifests").mkdir(parents=True)
    cache = dedupe.HashCache(data)
    whole = dedupe.fingerprint_all([(i, str(tmp / "store" / p)) for i, p in zip(df["image_id"], df["path"],
                                                                                strict=True)], 1, False)
    cache.write_shard(whole.iloc[:2], 0, 2)
    cache.write_shard(whole.iloc[2:], 1, 2)
    (data / "dedupe" / "shards" / "hashes-0-of-3.parquet").write_bytes(b"not parquet")
    (data / "dedupe" / "shards" / "hashes-0-of-3.key.json").write_text(
        json.dumps({"feature_version": dedupe.FEATURE_VERSION}))
    foreign = data / "dedupe" / "shards" / "hashes-1-of-3"
    whole.to_parquet(foreign.with_suffix(".parquet"))
    foreign.with_suffix(".key.json").write_text('{"feature_version": "another"}')
    out, m = dedupe.run(df, params, store_root=tmp / "store", cache=cache)
    assert m["fingerprinted"] == 0 and m["fingerprints_from_shards"] == 4
    assert m["excluded_duplicates"] == 1
    cache.save()
    assert not list((data / "dedupe" / "shards").glob("hashes-*"))
    again, m2 = dedupe.run(df, params, store_root=tmp / "store", cache=dedupe.HashCache(data))
    assert m2["fingerprinted"] == 0 and m2["fingerprints_from_shards"] == 0
    cols = ["image_id", "dup_cluster", "is_representative", "excluded_reason"]
    pd.testing.assert_frame_equal(out[cols], again[cols])


def test_near_copies_among_loose_files_decide_as_the_stage_does(stored):
    """Files with no manifest (a folder to hold aside): the re-encoded copy is the one pair,
    the same pair the stage clusters."""
    df, tmp = stored
    p = load_params(None, {"dedupe": {"workers": 1}}).dedupe
    items = [(i, str(tmp / "store" / path)) for i, path in zip(df["image_id"], df["path"], strict=True)]
    pairs = dedupe.near_copies(items[::-1], p)  # any order: the pair comes smaller id first
    copies = df.set_index("product_id").loc[["P0", "P1"], "image_id"]
    assert len(pairs) == 1 and [pairs.at[0, "a"], pairs.at[0, "b"]] == sorted(copies)
    assert dedupe.near_copies(items[2:], p).empty and dedupe.near_copies(items[:1], p).empty


def test_near_copies_of_files_named_without_folders(stored, monkeypatch):
    """Bare file names (a folder of one level, or none) are files like any other."""
    import shutil

    df, tmp = stored
    monkeypatch.chdir(tmp)
    items = []
    for i, path in zip(df["image_id"][:2], df["path"][:2], strict=True):  # P0 and its copy P1
        shutil.copy(tmp / "store" / path, tmp / f"{i}.jpg")
        items.append((i, f"{i}.jpg"))
    assert len(dedupe.near_copies(items, load_params(None, {"dedupe": {"workers": 1}}).dedupe)) == 1
