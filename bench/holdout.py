"""Models judged on photos from outside the pipeline: hold aside a fifth of the real photos,
train on the rest through the pipeline, score the held-aside photos as `gemcurate predict`
would, beside the raw-photo probe (issue: external test).

For each of ``../shared/realdata/jewelry`` and ``gems``:

1. **hold aside** a seeded fifth of each class *by file*, keeping byte-identical files
   together (the gem set has exact duplicates across classes and splits: a copy in train
   would make the external figure a memory test). The two parts are folders of symbolic
   links under ``--work`` (the photos never leave ../shared);
2. **curate** the rest as a store: the demo storefront serves it in folder mode, then
   scrape → dedupe → filter → crop → split → augment → validate → export;
3. **train** (``train`` params as given) and **evaluate** with ``evaluate.external`` set to
   the held-aside folder: the internal test split, the external photos, and the raw-photo
   probe on the same photos, in one run.

Usage:
    .venv/bin/python bench/holdout.py --work /tmp/holdout [--folders jewelry,gems]
        [--share 0.2] [--seed 0] [--set train.head_epochs=20 --set crop.margin=0.3 ...]
        [--tag NAME]     # a name for this attempt in the printed JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REALDATA = ROOT.parent / "shared" / "realdata"

from bench import param_overrides  # noqa: E402
from pipeline.stages.evaluate import IMAGE_EXTS  # noqa: E402


def hold_aside(folder: Path, dest: Path, share: float = 0.2, seed: int = 0) -> dict:
    """Symlink ``folder/<class>/*`` into ``dest/train`` and ``dest/test`` (about ``share`` of
    each class's files in test; identical bytes always on one side). Idempotent."""
    files = sorted(f for c in folder.iterdir() if c.is_dir() for f in sorted(c.iterdir())
                   if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}  # sha256 → "train" | "test"
    counts = {}
    for cdir in sorted(c for c in folder.iterdir() if c.is_dir()):
        mine = [f for f in files if f.parent == cdir]
        shas = sorted({digest[f] for f in mine} - set(side))
        order = rng.permutation(len(shas))
        want = round(share * len(mine))
        taken = sum(side.get(digest[f]) == "test" for f in mine)
        for i in order:
            sha = shas[i]
            n = sum(digest[f] == sha for f in mine)
            side[sha] = "test" if taken + n <= want and taken < want else "train"
            taken += n if side[sha] == "test" else 0
    for f in files:
        part = side[digest[f]]
        link = dest / part / f.parent.name / f.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f)
        counts.setdefault(part, 0)
        counts[part] += 1
    return counts


def curate(train_dir: Path, work: Path, sections: dict) -> dict:
    """Serve ``train_dir`` in folder mode, scrape it, run every curation stage (params with
    ``sections`` over the project's); reused when ``work`` already holds the dataset."""
    from pipeline import dataset
    from pipeline.core.config import load_params
    from pipeline.demo import process
    from pipeline.stages import augment, crop, dedupe, export, labels, split, validate
    from pipeline.stages import filter as filt
    from pipeline.stages.scrape import scrape

    data = work / "data"
    params = load_params(ROOT / "params.yaml", {
        **sections, "data": {"data_dir": str(data)},
        "scrape": {"max_rate": 1000.0, "default_rate": 1000.0, "concurrency": 8, "progress": False,
                   "site": str(ROOT / "sites" / "demo.yaml")}})
    t = time.perf_counter()
    if not (data / "dataset" / "manifest.parquet").exists():
        with process.storefront(["--catalog", str(train_dir), "--rate-limit", "1000", "--burst", "200",
                                 "--faults", "0"], cwd=ROOT) as store:
            res = scrape(params, base_url=store.base_url)
            assert res.status == "complete", res.message
        for mod in (dedupe, filt, labels, crop, split, augment, validate, export):
            mod.main(params, progress=False)
    ds = dataset.read_manifest(data / "dataset")
    return {"curate_s": round(time.perf_counter() - t, 1),
            "images": {s: int((ds["split"] == s).sum()) for s in ("train", "val", "test")},
            "photos_train": int(((ds["split"] == "train") & ds["parent_id"].isna()).sum()),
            "classes": int(ds["label"].nunique())}


def run_folder(name: str, work: Path, share: float, seed: int, over: dict) -> dict:
    from pipeline import dataset
    from pipeline.core.config import load_params
    from pipeline.core.stageio import StageIO
    from pipeline.stages import evaluate, train

    parts = hold_aside(REALDATA / name, work / "photos", share, seed)
    kind = {"crop": {"cut_by_border": "keep"}, "filter": {"hand_policy": "keep"}} \
        if name == "jewelry" else {}  # gemcurate init --kind jewelry
    sections = {k: {**kind.get(k, {}), **over.get(k, {})} for k in {*kind, *over}}
    info = curate(work / "photos" / "train", work, sections)
    ds_dir = work / "data" / "dataset"
    sections["data"] = {"data_dir": str(work / "data")}
    sections["evaluate"] = {"external": [str(work / "photos" / "test")], **over.get("evaluate", {})}
    p = load_params(ROOT / "params.yaml", sections)
    t = time.perf_counter()
    _, tm = train.run(dataset.read_manifest(ds_dir), p, dataset_dir=ds_dir, model_dir=work / "model")
    t_train = time.perf_counter() - t
    io = StageIO.of(p)
    raw = io.read("raw")
    _, em = evaluate.run(dataset.read_manifest(ds_dir), p, dataset_dir=ds_dir, model_dir=work / "model",
                         out_dir=work / "evaluate", plots_dir=work / "plots", raw=raw,
                         data_dir=io.data_dir, store_root=io.store_root)
    ext = em["external"]
    return {"photos": parts, **info, "train_s": round(t_train, 1), "epochs": tm["epochs"],
            "internal": {"split": em["split"], "images": em["images"], "top1": em["top1"],
                         "top3": em["top3"], "top5": em["top5"]},
            "external": {k: ext.get(k) for k in ("images", "scored", "top1", "top3", "top5",
                                                  "cropped", "unknown_classes", "vs_baseline_top1")},
            "retrieval": em.get("retrieval"),
            "baseline": {k: ext["baseline"].get(k) for k in ("top1", "top3", "top5", "train_images")}
            if ext.get("baseline") else None,
            "evaluate_dir": str(work / "evaluate")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folders", default="jewelry,gems")
    ap.add_argument("--work", required=True, help="the held-aside links, data and models go here")
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a params override for every stage (crop, split, augment, train …)")
    ap.add_argument("--tag", default="default")
    ap.add_argument("--split-only", action="store_true", help="only write the held-aside folders")
    a = ap.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"{REALDATA} absent")
    over = param_overrides(a.set)
    out = {"tag": a.tag, "overrides": a.set, "seed": a.seed, "share": a.share}
    for name in a.folders.split(","):
        work = Path(a.work) / name
        if a.split_only:
            out[name] = hold_aside(REALDATA / name, work / "photos", a.share, a.seed)
            continue
        out[name] = run_folder(name, work, a.share, a.seed, over)
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
