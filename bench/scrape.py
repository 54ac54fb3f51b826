"""Scrape benchmark: achieved request rate against the store's limit, and images/s.

Starts a real storefront (a generated catalog of ≥ 3,000 images by default),
scrapes it with the repository's params.yaml (max_rate lifted so the store's
robots.txt sets the pace), then refreshes it at the next epoch. Prints figures
as ratios against references measured in the same run: the store's allowed
rate, and the full crawl's time for the refresh.

Usage:
    .venv/bin/python bench/scrape.py [--classes 20] [--products-per-class 40] [--rate-limit 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.config import load_params  # noqa: E402
from pipeline.demo import process  # noqa: E402
from pipeline.demo.catalog import Catalog, CatalogOptions  # noqa: E402
from pipeline.stages.scrape import scrape  # noqa: E402


def crawl(params, store_args: list[str], port: int = 0):
    """Serve ``store_args``, scrape it once; returns (result, seconds, store stats, port)."""
    with process.storefront(store_args, port=port, cwd=ROOT) as store:
        t = time.perf_counter()
        res = scrape(params, base_url=store.base_url)
        return res, time.perf_counter() - t, store.stats(), store.port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--products-per-class", type=int, default=40)
    ap.add_argument("--rate-limit", type=float, default=50.0)
    ap.add_argument("--faults", type=float, default=0.02)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "scrape.json"))
    a = ap.parse_args()
    store_args = ["--seed", str(a.seed), "--classes", str(a.classes), "--products-per-class",
                  str(a.products_per_class), "--rate-limit", str(a.rate_limit), "--faults",
                  str(a.faults)]
    n_images = len(Catalog.generate(CatalogOptions(seed=a.seed, classes=a.classes,
                                                   products_per_class=a.products_per_class)).images)
    results = {"catalog_images": n_images, "store_rate_limit": a.rate_limit}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        params = load_params(ROOT / "params.yaml", {
            "data": {"data_dir": str(tmp / "data")},
            "scrape": {"max_rate": min(1000.0, 10 * a.rate_limit), "progress": False,
                       "site": str(ROOT / "sites" / "demo.yaml")}})
        full, full_s, st, port = crawl(params, store_args)
        refresh, refresh_s, st1, _ = crawl(params, [*store_args, "--epoch", "1"], port)
    f = full.stats
    results.update({
        "full_status": full.status, "full_s": round(full_s, 1), "requests": f["requests"],
        "achieved_rate": f["achieved_rate"], "rate_share_of_store_limit": f["rate_share"],
        "images_downloaded": f["images_downloaded"],
        "images_per_s": round(f["images_downloaded"] / full_s, 2),
        "bans": st["bans"], "store_429s": st["rate_limited"], "retries": f["retries"],
        "mb_per_s": round(f["bytes"] / 1e6 / full_s, 2),
        "refresh_status": refresh.status, "refresh_s": round(refresh_s, 1),
        "refresh_images_downloaded": refresh.stats["images_downloaded"],
        "refresh_304": refresh.stats["images_304"] + refresh.stats["pages_304"],
        "refresh_images_served_by_store": st1["images_served"],
        "refresh_time_ratio": round(refresh_s / full_s, 3),
    })
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    w = max(map(len, results))
    print("scrape benchmark (reference: the store's allowed rate, and the full crawl's time)")
    for k, v in results.items():
        print(f"  {k:<{w}}  {v}")


if __name__ == "__main__":
    main()
