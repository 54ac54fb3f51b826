"""Slices of the pipeline on a real storefront: scrape → dedupe → filter → crop → report."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.core import decisions
from pipeline.core.manifest import manifest_path, read_manifest
from pipeline.demo.scoring import curation_scores
from pipeline.stages import crop, dedupe, labels
from pipeline.stages import filter as filt
from pipeline.stages.scrape import scrape
from tests.helpers import JUNKY, ROOT, truth_for


def gemcurate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def scraped(storefront, params_for, *flags: str):
    """Scrape the JUNKY storefront (plus ``flags``) fast; returns the store and params."""
    store = storefront(*JUNKY, "--faults", "0", "--rate-limit", "200", *flags)
    params = params_for(max_rate=300.0, default_rate=300.0)
    assert scrape(params, base_url=store.base_url).status == "complete"
    return store, params


@pytest.mark.slow
def test_curation_against_the_storefront_truth(storefront, params_for, tmp_path):
    scraped(storefront, params_for)
    data = tmp_path / "data"
    (tmp_path / "p.yaml").write_text(f"data: {{data_dir: {data}}}\n")
    for stage in ("dedupe", "filter", "labels", "crop", "report"):
        r = gemcurate(stage, "--params", str(tmp_path / "p.yaml"), "--no-progress")
        assert r.returncode == 0, r.stderr
    df = read_manifest(manifest_path(data, "crop"))
    s = curation_scores(df, truth_for(JUNKY))
    assert s["duplicate_pairs"]["recall"] >= 0.95 and s["duplicate_pairs"]["precision"] >= 0.95, s
    assert s["certificate"]["recall"] >= 0.95 and s["certificate"]["precision"] >= 0.95, s
    assert s["hand"]["recall"] >= 0.85 and s["hand"]["precision"] >= 0.95, s
    assert s["crop"]["median_iou"] >= 0.9, s
    # the storefront copies photos across classes: those must wait for a person
    conflicts = df[df["excluded_reason"] == "label_conflict"]
    assert len(conflicts) and conflicts["needs_review"].all()
    assert (df.groupby("dup_cluster")["is_representative"].sum() <= 1).all()
    html = (data / "report" / "index.html").read_text()
    for reason in ("certificate", "hand", "label_conflict"):
        assert reason in html
    # every flagged image is in the report: sheets exist for each exclusion reason
    sheets = {p.name for p in (data / "report").glob("sheet_*.png")}
    assert any("certificate" in n for n in sheets) and any("hand" in n for n in sheets)

    # an annotator's word overrides the machine on the next run
    hand = df[df["excluded_reason"] == "hand"].iloc[0]["image_id"]
    kept = df[df["excluded_reason"].isna()].iloc[0]["image_id"]
    r = gemcurate("decide", hand, "accept", "--by", "ana", "--params", str(tmp_path / "p.yaml"))
    assert r.returncode == 0, r.stderr
    db = decisions.Decisions(decisions.connect(decisions.review_url(data)))
    db.record(kept, "reject", "bo")
    assert gemcurate("filter", "--params", str(tmp_path / "p.yaml"), "--no-progress").returncode == 0
    f = read_manifest(manifest_path(data, "filter")).drop_duplicates("image_id").set_index("image_id")
    assert f.loc[hand, "excluded_reason"] is None or f.isna().loc[hand, "excluded_reason"]
    assert bool(f.loc[hand, "is_hand"])  # the machine's flag stays visible
    assert f.loc[kept, "excluded_reason"] == decisions.REJECTED

    # a rerun with nothing new fingerprints nothing and searches nothing
    m = json.loads(gemcurate("dedupe", "--params", str(tmp_path / "p.yaml"), "--no-progress").stdout)
    assert m["fingerprinted"] == 0 and m["new_candidate_pairs"] == 0


@pytest.mark.slow
def test_refresh_computes_only_new_images(storefront, params_for, tmp_path):
    store, params = scraped(storefront, params_for)
    data = tmp_path / "data"
    m0 = dedupe.main(params, progress=False)
    f0 = filt.main(params, progress=False)
    labels.main(params, progress=False)
    c0 = crop.main(params, progress=False)
    assert f0["images_reused"] == 0 and c0["images_reused"] == 0
    store.stop()
    scraped(storefront, params_for, "--epoch", "1")
    raw = read_manifest(manifest_path(data, "raw"))
    inc, m1 = dedupe.run(raw, params, store_root=data / "store", cache=dedupe.HashCache(data))
    assert m1["incremental"] and 0 < m1["fingerprinted"] < 0.3 * m0["fingerprinted"]
    # the incremental answer equals a from-scratch run
    scratch, _ = dedupe.run(raw, params, store_root=data / "store", cache=None)
    cols = ["source_url", "dup_cluster", "is_representative", "excluded_reason"]
    a = inc[cols].sort_values("source_url").reset_index(drop=True)
    b = scratch[cols].sort_values("source_url").reset_index(drop=True)
    assert a.equals(b)
    # filter and crop score and crop only what their caches do not hold, with the same answer
    dedupe.main(params, progress=False)
    f1 = filt.main(params, progress=False)
    labels.main(params, progress=False)
    c1 = crop.main(params, progress=False)
    assert f1["images_reused"] > 0 and f1["images_scored"] < 0.3 * f0["images_scored"], f1
    assert c1["images_reused"] > 0 and c1["images"] - c1["images_reused"] < 0.3 * c0["images"], c1
    inc_crop = read_manifest(manifest_path(data, "crop"))
    for folder in ("filter", "crop"):
        shutil.rmtree(data / folder)
    filt.main(params, progress=False)
    labels.main(params, progress=False)
    c2 = crop.main(params, progress=False)
    assert c2["images_reused"] == 0
    scratch_crop = read_manifest(manifest_path(data, "crop"))
    cols = ["source_url", "excluded_reason", "needs_review", "is_certificate", "is_hand",
            "certificate_score", "crop_confidence", "crop_issue", "crop_path"]
    a = inc_crop[cols].sort_values("source_url").reset_index(drop=True)
    b = scratch_crop[cols].sort_values("source_url").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert [list(x) if x is not None else None for x in inc_crop.sort_values("source_url")["crop_box"]] == \
        [list(x) if x is not None else None for x in scratch_crop.sort_values("source_url")["crop_box"]]


def _shard(stage: str, params, shard: tuple[int, int]) -> dict:
    return {"dedupe": dedupe, "filter": filt, "crop": crop}[stage].main(params, shard=shard, progress=False)


@pytest.mark.slow
def test_two_shards_on_two_workers_give_what_one_process_gives(storefront, params_for, tmp_path):
    """dedupe, filter and crop ``--shard i/n`` run at once in two processes, each writing its
    share of the per-image cache; the full run then computes nothing and writes the manifest
    a one-process run writes."""
    from concurrent.futures import ProcessPoolExecutor

    _, one = scraped(storefront, params_for)
    many_dir = tmp_path / "sharded"
    shutil.copytree(tmp_path / "data", many_dir)
    many = params_for(many_dir, max_rate=300.0, default_rate=300.0)
    d1 = dedupe.main(one, progress=False)
    with ProcessPoolExecutor(2) as pool:
        shares = list(pool.map(_shard, ["dedupe"] * 2, [many] * 2, [(0, 2), (1, 2)]))
    assert all(s["images"] > 0 for s in shares) and sum(s["images"] for s in shares) == d1["fingerprinted"]
    dm = dedupe.main(many, progress=False)
    assert dm["fingerprinted"] == 0 and dm["fingerprints_from_shards"] == d1["fingerprinted"], dm
    assert dm["near_duplicate_pairs"] == d1["near_duplicate_pairs"] > 0
    assert not list((many_dir / "dedupe" / "shards").glob("*")), "merged shards are removed"
    pd.testing.assert_frame_equal(read_manifest(manifest_path(tmp_path / "data", "dedupe")),
                                  read_manifest(manifest_path(many_dir, "dedupe")))
    first = {"filter": filt.main(one, progress=False)}
    labels.main(one, progress=False)
    first["crop"] = crop.main(one, progress=False)
    # images that failed (broken files) are never cached: every full run tries them again
    retried = {s: (first[s]["images_scored"] if s == "filter" else first[s]["images"])
               - len(pd.read_parquet(tmp_path / "data" / s / "results.parquet")) for s in first}

    for stage, module in (("filter", filt), ("crop", crop)):
        with ProcessPoolExecutor(2) as pool:
            shares = list(pool.map(_shard, [stage] * 2, [many] * 2, [(0, 2), (1, 2)]))
        assert all(s["images"] > 0 for s in shares), shares
        metrics = module.main(many, progress=False)
        computed = metrics["images_scored"] if stage == "filter" else \
            metrics["images"] - metrics["images_reused"]
        assert computed == retried[stage], (metrics, retried)
        assert not list((many_dir / stage / "shards").glob("*")), "merged shards are removed"
        if stage == "filter":
            labels.main(many, progress=False)
        a = read_manifest(manifest_path(tmp_path / "data", stage))
        b = read_manifest(manifest_path(many_dir, stage))
        pd.testing.assert_frame_equal(a.drop(columns=["path"], errors="ignore"),
                                      b.drop(columns=["path"], errors="ignore"))
    assert gemcurate("filter", "--shard", "2/2").returncode != 0
