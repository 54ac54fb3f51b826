"""Dataset pipeline benchmark: the main job through DVC on a generated catalog, then a refresh.

In a copy of this working tree (a fresh git repository, DVC remote in a temp folder):
storefront → scrape → snapshot → ``dvc repro`` → publish, then the same against
``--epoch 1``. Reports each stage's wall time (from ``dvc repro``'s output), the
dataset's size (images, shards, bytes, per split), the no-op rerun time, a refresh of the
unchanged store (its time and the stages it reran), and the
share of images that kept their split across the refresh.

Usage:
    .venv/bin/python bench/pipeline.py [--classes 20] [--products-per-class 35] [--target 300]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path) -> tuple[str, float]:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout + res.stderr, time.perf_counter() - t


def copy_repo(dest: Path, target: int) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            (dest / f).write_bytes((ROOT / f).read_bytes())
    p = yaml.safe_load((dest / "params.yaml").read_text())
    p["scrape"].update(max_rate=1000.0, default_rate=1000.0, concurrency=8, progress=False)
    p["augment"]["target_per_class"] = target
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        sh(cmd, dest)


def stage_times(metrics_dir: Path) -> dict:
    out = {}
    for stage in ("dedupe", "filter", "labels", "crop", "split", "augment", "validate", "export"):
        f = metrics_dir / f"{stage}.json"
        if f.exists():
            sec = json.loads(f.read_text()).get("seconds")
            out[stage] = sec.get("total") if isinstance(sec, dict) else sec
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--products-per-class", type=int, default=35)
    ap.add_argument("--target", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "pipeline.json"))
    a = ap.parse_args()
    store = ["--seed", "2024", "--classes", str(a.classes), "--products-per-class",
             str(a.products_per_class), "--rate-limit", "1000", "--burst", "200", "--faults", "0"]
    res: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo, a.target)
        sh([str(BIN / "dvc"), "remote", "modify", "--local", "local", "url", str(Path(tmp) / "remote")],
           repo)
        out, t = sh([sys.executable, "-m", "pipeline", "demo", "--", *store], repo)
        res["main_job_s"] = round(t, 1)
        res["stage_s"] = stage_times(repo / "data" / "metrics")
        raw = pd.read_parquet(repo / "data" / "manifests" / "raw.parquet")
        ds = pd.read_parquet(repo / "data" / "dataset" / "manifest.parquet")
        export = json.loads((repo / "data" / "metrics" / "export.json").read_text())
        res["dataset"] = {"raw_images": len(raw), "images": len(ds),
                          "photos": int(ds["parent_id"].isna().sum()),
                          "variants": int(ds["parent_id"].notna().sum()),
                          "per_split": export["per_split"], "shards": export["shards"],
                          "mb": round(export["bytes"] / 1e6, 1), "classes": export["classes"]}
        res["tag"] = re.findall(r"published (dataset/v[0-9.]+[0-9])", out)
        _, t = sh([str(BIN / "dvc"), "repro"], repo)
        res["noop_repro_s"] = round(t, 1)
        # the same store again (a weekly refresh that finds nothing new): scrape, snapshot and
        # `dvc repro` should rerun dedupe alone (the crawl's bookkeeping stays in raw)
        out, t = sh([sys.executable, "-m", "pipeline", "demo", "--", *store], repo)
        res["unchanged_refresh_s"] = round(t, 1)
        res["unchanged_refresh_ran"] = re.findall(r"Running stage '(\w+)'", out)
        before = pd.read_parquet(repo / "data" / "manifests" / "split.parquet")
        before = before[before["split"].notna()].set_index("image_id")["split"]
        out, t = sh([sys.executable, "-m", "pipeline", "demo", "--", *store, "--epoch", "1"], repo)
        res["refresh_s"] = round(t, 1)
        res["refresh_stage_s"] = stage_times(repo / "data" / "metrics")
        after = pd.read_parquet(repo / "data" / "manifests" / "split.parquet")
        after = after[after["split"].notna()].set_index("image_id")["split"]
        common = before.index.intersection(after.index)
        res["refresh"] = {"images_before": len(before), "images_after": len(after),
                          "in_both": len(common),
                          "kept_split": round(float((before[common] == after[common]).mean()), 4),
                          "test_to_train": int(((before[common] == "test")
                                                & (after[common] == "train")).sum()),
                          "tags": re.findall(r"published (dataset/v[0-9.]+[0-9])", out)}
    print(json.dumps(res, indent=2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
