"""Curation benchmark: quality against ground truth, throughput, near-duplicate search scaling.

Parts (run all, or pick with --only):

* ``search``: multi-index search vs a vectorized brute force measured in the
  same run, at 10k / 100k / 1M uniform 64-bit hashes with planted near copies
  (brute force only where it is feasible), time and peak memory.
* ``throughput``: fingerprinting, filtering (no OCR) and box finding + cropping,
  images/s on one core, on 800 px JPEGs.
* ``generated``: a storefront catalog (seed 2024, not used by tests, ≥ 3,000
  images) scraped for real, curated, scored against the truth.

Usage:
    .venv/bin/python bench/curation.py [--only search,throughput,generated] [--max-n 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scrape import start_store  # noqa: E402
from pipeline import crop, dedupe  # noqa: E402
from pipeline import filter as filt  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.evaluate import curation_scores  # noqa: E402
from pipeline.hashindex import HashIndex, brute_force_pairs  # noqa: E402
from pipeline.hashing import fingerprint  # noqa: E402
from pipeline.imageio import load_rgb  # noqa: E402
from pipeline.manifest import manifest_path, read_manifest  # noqa: E402
from pipeline.scrape import scrape  # noqa: E402
from pipeline.store import gems, junk  # noqa: E402
from pipeline.store.catalog import Catalog, rng_for  # noqa: E402
from tests.conftest import catalog_options  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_search(max_n: int, radius: int) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    for n in (10_000, 100_000, 1_000_000):
        if n > max_n:
            break
        h = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
        k = n // 100
        near = h[rng.integers(0, n, k)] ^ (np.uint64(1) << rng.integers(0, 64, k).astype(np.uint64))
        h = np.concatenate([h[: n - k], near])
        t = time.perf_counter()
        idx = HashIndex(h, radius)
        i, _, _ = idx.pairs()
        t_mih = time.perf_counter() - t
        row = {"mih_s": round(t_mih, 2), "pairs": len(i), "index_mb": round(idx.nbytes / 1e6, 1),
               "peak_rss_mb": round(rss_mb(), 1)}
        if n <= 100_000:
            t = time.perf_counter()
            b = brute_force_pairs(h, radius)
            t_bf = time.perf_counter() - t
            row.update(brute_force_s=round(t_bf, 2), speedup=round(t_bf / t_mih, 1),
                       identical=bool(len(b[0]) == len(i)))
        out[str(n)] = row
        print("search", n, row, flush=True)
    return out


def bench_throughput(n: int = 120) -> dict:
    p = load_params(ROOT / "params.yaml")
    files = []
    for k in range(n):
        plan = gems.plan_gem(rng_for(2024, "tp", k), list(gems.GEM_CLASSES)[k % 20], size=(800, 800))
        files.append(junk.encode(gems.draw_gem(plan), "JPEG", 90))
    fp = load_params(ROOT / "params.yaml", {"filter": {"ocr_second_opinion": False}}).filter
    res = {}
    t = time.perf_counter()
    for d in files:
        fingerprint(d)
    res["fingerprint_img_s"] = round(n / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    for d in files:
        lo = load_rgb(d, max_side=fp.analysis_side)
        filt.score_image(lo.array, lo.orig_size, "x.jpg", fp)
    res["filter_img_s"] = round(n / (time.perf_counter() - t), 1)
    t = time.perf_counter()
    for d in files:
        lo = load_rgb(d, max_side=p.crop.analysis_side)
        r = crop.find_box(lo.array, p.crop)
        full = load_rgb(d).array
        crop.cut(full, crop.scale_box(r.box, lo.scale), p.crop.target_size, r.background)
    res["crop_img_s"] = round(n / (time.perf_counter() - t), 1)
    print("throughput (1 core, 800 px JPEG)", res, flush=True)
    return res


def bench_generated(classes: int, ppc: int) -> dict:
    args = ["--seed", "2024", "--classes", str(classes), "--products-per-class", str(ppc)]
    truth = Catalog.build(catalog_options(args)).truth()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, base = start_store([*args, "--rate-limit", "1000", "--burst", "200", "--faults", "0"], tmp)
        try:
            params = load_params(ROOT / "params.yaml", {
                "data": {"data_dir": str(tmp / "data")},
                "scrape": {"max_rate": 1000.0, "default_rate": 1000.0, "concurrency": 8,
                           "progress": False}})
            t = time.perf_counter()
            assert scrape(params, base_url=base).status == "complete"
            times = {"scrape_s": round(time.perf_counter() - t, 1)}
        finally:
            proc.terminate()
            proc.wait()
        for mod in (dedupe, filt, crop):
            t = time.perf_counter()
            mod.main(params, progress=False)
            times[f"{mod.__name__.split('.')[-1]}_s"] = round(time.perf_counter() - t, 1)
        df = read_manifest(manifest_path(tmp / "data", "crop"))
        scores = curation_scores(df, truth)
        scores["times"] = times
        scores["images"] = len(truth["images"])
    print("generated", json.dumps(scores), flush=True)
    return scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="search,throughput,generated")
    ap.add_argument("--max-n", type=int, default=1_000_000)
    ap.add_argument("--radius", type=int, default=10)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--products-per-class", type=int, default=35)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "curation.json"))
    a = ap.parse_args()
    parts = a.only.split(",")
    out: dict = {}
    if "throughput" in parts:
        out["throughput"] = bench_throughput()
    if "generated" in parts:
        out["generated"] = bench_generated(a.classes, a.products_per_class)
    if "search" in parts:
        out["search"] = bench_search(a.max_n, a.radius)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
