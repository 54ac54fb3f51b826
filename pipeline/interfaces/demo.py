"""``gemcurate demo``: the main job on the embedded default, end to end.

Starts the bundled storefront on a free local port, scrapes it politely with
``params.yaml``, prints the scrape summary and how complete the result is
against the storefront's ground truth, and stops the storefront. Then, unless
``--scrape-only``: tracks the raw snapshot with DVC (``gemcurate snapshot``),
runs the pipeline (``dvc repro``: dedupe → filter → labels → crop → split →
augment → validate → export → train → evaluate), publishes the dataset version (git tag + DVC remote) and
prints where its dataset card is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.config import load_params
from pipeline.core.manifest import read_manifest
from pipeline.demo import process
from pipeline.demo.catalog import Catalog
from pipeline.demo.layouts import ground_truth
from pipeline.demo.options import catalog_options_from_args
from pipeline.stages.scrape import format_summary, scrape
from pipeline.stages.scrape.site import load_site

logger = logging.getLogger(__name__)


def run_demo(params_path: str, data_dir: str | None, store_args: list[str],
             scrape_only: bool = False, publish: bool = True) -> int:
    """Run storefront → scrape (→ snapshot → dvc repro → publish); returns an exit code."""
    code = _scrape_demo(params_path, data_dir, store_args)
    if code != 0 or scrape_only:
        return code
    return _pipeline(params_path, data_dir or "data", publish)


def _pipeline(params_path: str, data_dir: str, publish: bool) -> int:
    from pipeline.stages.publish import PublishError, dvc_cmd, repo_root
    from pipeline.stages.publish import publish as do_publish
    from pipeline.stages.publish import snapshot as do_snapshot

    root = repo_root()
    if Path(data_dir).resolve() != (root / "data").resolve():
        print(f"(the DVC pipeline works on {root / 'data'}; {data_dir} was scraped only)")
        return 0
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    print("\n== snapshot: dvc add data/store data/manifests/raw.parquet")
    do_snapshot(root, "data")
    print("== dvc repro: dedupe → filter → crop → split → augment → validate → export → train → "
          "evaluate")
    t = time.perf_counter()
    res = subprocess.run([*dvc_cmd(), "repro"], cwd=root, env=env)
    if res.returncode != 0:
        summary = root / "data" / "validate" / "summary.txt"
        print(f"dvc repro failed (exit {res.returncode})"
              + (f"; validation summary: {summary}" if summary.exists() else ""), file=sys.stderr)
        return res.returncode
    print(f"   pipeline finished in {time.perf_counter() - t:.0f} s")
    card = root / "data" / "dataset" / "README.md"
    scores = root / "data" / "metrics" / "evaluate.json"
    if scores.exists():
        m = json.loads(scores.read_text())
        print(f"== model {m['model']}: test top-1 {m.get('top1', float('nan')):.3f}, top-3 "
              f"{m.get('top3', float('nan')):.3f}, top-5 {m.get('top5', float('nan')):.3f} on "
              f"{m['images']} {m['split']} images; macro F1 {m['macro']['f1']:.3f}")
        print(f"   report: {root / 'models' / 'MODEL_CARD.md'} and {root / 'data' / 'evaluate'}/")
    if publish:
        try:
            pub = do_publish(load_params(params_path), root, "data")
        except PublishError as exc:
            print(f"publish: {exc}", file=sys.stderr)
            return 1
        print(f"== published {pub.tag}: {pub.images:,} images, commit {pub.commit[:10]}"
              + (", pushed to the DVC remote" if pub.pushed else ""))
        print(f"   a trainer gets it with: gemcurate pull --version {pub.tag} --out DIR")
    print(f"\ndataset card: {card}")
    return 0


def _scrape_demo(params_path: str, data_dir: str | None, store_args: list[str]) -> int:
    """Run storefront → scrape and print the summary; returns the scrape's exit code."""
    params = load_params(params_path, {"data": {"data_dir": data_dir}})
    # a real store keeps its address: reuse the last run's port when it is free, so a
    # refresh sees the same URLs (conditional GETs, unchanged rows) instead of a new host
    remembered = Path(params.data.data_dir) / ".demo-port"
    with process.storefront(store_args, port=_reusable_port(remembered)) as store:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(f"{store.port}\n")
        print(f"storefront running at {store.base_url} (gemcurate store serve {' '.join(store_args)})")
        site = load_site(params.scrape.site, store.base_url)
        res = scrape(params, site)
        print(format_summary(res, site))
        if res.manifest_path is not None:
            _report_truth(res.manifest_path, store_args)
        return res.exit_code


def _reusable_port(remembered: Path) -> int:
    """The port of the last demo run when it can be bound now, else 0 (any free port)."""
    try:
        port = int(remembered.read_text().strip())
    except (OSError, ValueError):
        return 0
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


def _report_truth(manifest_path: Path, store_args: list[str]) -> None:
    truth = ground_truth(Catalog.build(catalog_options_from_args(store_args)))
    df = read_manifest(manifest_path)
    usable = {urlsplit(u).path for u in df.loc[df["excluded_reason"].isna(), "source_url"]}
    valid = [im["url"] for im in truth["images"] if im["junk"] not in ("corrupt", "html",
                                                                         "oversized")]
    got = sum(u in usable for u in valid)
    broken = [im for im in truth["images"] if im["junk"] in ("corrupt", "html", "oversized")]
    rows = {urlsplit(u).path: r for u, r in zip(df["source_url"], df["excluded_reason"],
                                                strict=True)}
    caught = sum(isinstance(rows.get(im["url"]), str) for im in broken)
    truth_path = manifest_path.parent / "demo_truth.json"
    truth_path.write_text(json.dumps(truth))
    print(f"  ground truth {got:,} of {len(valid):,} valid product images fetched "
          f"({100 * got / max(1, len(valid)):.2f}%); {caught} of {len(broken)} broken files "
          f"rejected with a reason (truth: {truth_path})")
