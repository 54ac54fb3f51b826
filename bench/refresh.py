"""What a refresh costs, per storefront layout: requests of the first crawl against a refresh.

For each layout the storefront serves the default catalog (12 classes × 30 products) at
epoch 0; gemcurate scrapes it with the shipped template (``sites/<layout>.yaml``); the store
moves to epoch 1 with ``--churn`` (the share of images added, changed or removed); the same
state is scraped again. Requests are counted by the storefront's ``/_stats``. The refresh
must record every added, changed and removed image the truth has; the script checks that
against the truth and prints both request counts and their ratio (target ≤ 5 % at churn 0.01).

Usage:
    .venv/bin/python -m bench.refresh [--layouts demo,shopify,woocommerce,magento]
        [--churn 0.01] [--classes 12] [--products-per-class 30] [--rate-limit 1000] [--full]
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
from pipeline.core.manifest import read_manifest  # noqa: E402
from pipeline.demo import process  # noqa: E402
from pipeline.demo.catalog import Catalog  # noqa: E402
from pipeline.demo.layouts import ground_truth  # noqa: E402
from pipeline.demo.options import catalog_options_from_args  # noqa: E402
from pipeline.stages.scrape import scrape  # noqa: E402


def changes(t0: dict, t1: dict) -> dict[str, set]:
    e0 = {im["url"]: im["etag"] for im in t0["images"]}
    e1 = {im["url"]: im["etag"] for im in t1["images"]}
    return {"added": {u for u in e1 if u not in e0},
            "changed": {u for u in e1 if u in e0 and e0[u] != e1[u]},
            "removed": set(e0) - set(e1)}


def run(layout: str, a: argparse.Namespace) -> dict:
    flags = ["--classes", str(a.classes), "--products-per-class", str(a.products_per_class),
             "--faults", str(a.faults), "--rate-limit", str(a.rate_limit), "--burst", "50",
             "--layout", layout, "--churn", str(a.churn), "--seed", str(a.seed)]
    work = Path(tempfile.mkdtemp(prefix=f"refresh-{layout}-"))
    params = load_params(ROOT / "params.yaml", {
        "data": {"data_dir": str(work / "data")},
        "scrape": {"site": str(ROOT / "sites" / f"{layout}.yaml"), "progress": False,
                   "max_rate": min(1000.0, a.rate_limit * 1.5), "concurrency": 8,
                   "backoff_base_s": 0.05, "full_refresh_every": 1 if a.full else 8}})
    out: dict = {"layout": layout}
    with process.storefront(flags, cwd=ROOT) as store:
        t = time.perf_counter()
        r0 = scrape(params, base_url=store.base_url)
        out["first_s"] = round(time.perf_counter() - t, 1)
        s0 = store.stats()
        port = store.port
    assert r0.status == "complete", r0.message
    with process.storefront([*flags, "--epoch", "1"], port=port, cwd=ROOT) as store:
        t = time.perf_counter()
        r1 = scrape(params, base_url=store.base_url)
        out["refresh_s"] = round(time.perf_counter() - t, 1)
        s1 = store.stats()
    assert r1.status == "complete", r1.message
    t0 = ground_truth(Catalog.build(catalog_options_from_args(flags)), layout)
    df0 = read_manifest(r0.manifest_path)
    prefix0 = df0["source_url"].iloc[0].split("/", 3)
    usable = set(df0.loc[df0["excluded_reason"].isna(), "source_url"].str.removeprefix(
        f"{prefix0[0]}//{prefix0[2]}"))
    valid = {im["url"] for im in t0["images"] if im["junk"] not in ("corrupt", "html", "oversized")}
    out.update({"first_valid_share": round(len(valid & usable) / len(valid), 4),
                "first_rate_share": r0.stats.get("rate_share"),
                "first_faults": sum(s0["faults"].values())})
    t1 = ground_truth(Catalog.build(catalog_options_from_args([*flags, "--epoch", "1"])), layout)
    truth = changes(t0, t1)
    df = read_manifest(r1.manifest_path)
    base = r1.stats and df["source_url"].iloc[0].split("/", 3)
    prefix = f"{base[0]}//{base[2]}"
    got = {k: set(df.loc[df["change"] == k, "source_url"].str.removeprefix(prefix)) for k in truth}
    # a re-shot broken file keeps its bytes: the truth's "changed" may hold unchanged bytes
    out.update({
        "first_requests": s0["requests"], "refresh_requests": s1["requests"],
        "ratio": round(s1["requests"] / s0["requests"], 4),
        "images": len(t1["images"]),
        "truth": {k: len(v) for k, v in truth.items()},
        "recorded": {k: len(got[k] & truth[k]) for k in truth},
        "missed": {k: sorted(truth[k] - got[k])[:3] for k in truth if truth[k] - got[k]},
        "products_skipped": r1.stats.get("products_skipped"),
        "images_skipped": r1.stats.get("images_skipped"),
        "bans": s0["bans"] + s1["bans"], "refresh_by_kind": s1["by_kind"],
    })
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layouts", default="demo,shopify,woocommerce,magento")
    ap.add_argument("--churn", type=float, default=0.01)
    ap.add_argument("--classes", type=int, default=12)
    ap.add_argument("--products-per-class", type=int, default=30)
    ap.add_argument("--rate-limit", type=float, default=1000.0)
    ap.add_argument("--faults", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true", help="the refresh is a full pass (full_refresh_every 1)")
    a = ap.parse_args()
    rows = []
    for layout in a.layouts.split(","):
        r = run(layout, a)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{'layout':<12} {'first crawl':>11} {'valid':>6} {'rate':>5} {'refresh':>8} {'ratio':>7}  "
          f"added/changed/removed recorded of truth")
    for r in rows:
        rec = "/".join(f"{r['recorded'][k]}:{r['truth'][k]}" for k in ("added", "changed", "removed"))
        print(f"{r['layout']:<12} {r['first_requests']:>11,} {100 * r['first_valid_share']:>5.1f}% "
              f"{100 * (r['first_rate_share'] or 0):>4.0f}% {r['refresh_requests']:>8,} "
              f"{100 * r['ratio']:>6.2f}%  {rec}")


if __name__ == "__main__":
    main()
