"""Models judged on photos from outside the pipeline: hold aside a fifth of the real photos,
train on the rest through the pipeline, score the held-aside photos as `gemcurate predict`
would, beside the raw-photo probe (issue: external test).

For each of ``../shared/realdata/jewelry`` and ``gems``:

1. **hold aside** a seeded fifth of each class *by file*, keeping copies together: identical
   bytes and near copies as the dedupe stage finds them (the gem set has exact duplicates
   across classes and one pearl photographed up to seven times: a copy in train would make
   the external figure a memory test). The two parts are folders of symbolic
   links under ``--work`` (the photos never leave ../shared);
2. **curate** the rest as a store with the params ``gemcurate init --kind <folder>`` writes
   (jewelry: the whole photo, no rotations, hands kept) and any ``--set``: the demo
   storefront serves it in folder mode, then scrape → dedupe → filter → crop → split →
   augment → validate → export;
3. **train** (``train`` params as given) and **evaluate** with ``evaluate.external`` set to
   the held-aside folder: the internal test split, the external photos, and the raw-photo
   probe on the same photos, in one run.

With ``--folds K`` every photo is held aside once: the files are dealt into K seeded folds
(per class; identical bytes and near copies, as the dedupe stage finds them, in one fold),
each fold is the external test of one run trained on the other K − 1, and the figures are
summed over all photos — 400 jewelry photos instead of 80, so a 2-point difference is 8
photos, not 1.6. The model and the probe are compared photo by photo (both score the same
photos): the difference, a paired bootstrap 95 % interval and McNemar's exact p on the
photos only one of them got right.

Usage:
    .venv/bin/python bench/holdout.py --work /tmp/holdout [--folders jewelry,gems]
        [--share 0.2] [--seed 0] [--set train.head_epochs=20 --set crop.margin=0.3 ...]
        [--folds 5 [--fold 0,1]]   # cross-validation: every photo held aside once
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
    each class's files in test; a group of copies — :func:`copy_groups` — always on one
    side). Idempotent."""
    group = _photos(folder)
    rng = np.random.default_rng(seed)
    side: dict[str, str] = {}  # group → "train" | "test"
    for cdir in sorted(c for c in folder.iterdir() if c.is_dir()):
        mine = [g for f, g in group.items() if f.parent == cdir]
        todo = sorted(set(mine) - set(side))
        want = round(share * len(mine))
        taken = sum(side.get(g) == "test" for g in mine)
        for i in rng.permutation(len(todo)):
            n = mine.count(todo[i])
            side[todo[i]] = "test" if taken + n <= want and taken < want else "train"
            taken += n if side[todo[i]] == "test" else 0
    return _link({f: side[g] for f, g in group.items()}, dest)


def _photos(folder: Path) -> dict[Path, str]:
    """Each photo of ``folder/<class>/*`` (sorted) → its group of copies (:func:`copy_groups`)."""
    files = sorted(f for c in folder.iterdir() if c.is_dir() for f in sorted(c.iterdir())
                   if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    group = copy_groups(files, digest)
    return {f: group[digest[f]] for f in files}


def _link(part_of: dict[Path, str], dest: Path) -> dict[str, int]:
    """Symlink each file into ``dest/<its part>/<class>/``; the files per part. Idempotent."""
    counts: dict[str, int] = {}
    for f, part in part_of.items():
        link = dest / part / f.parent.name / f.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(f)
        counts[part] = counts.get(part, 0) + 1
    return counts


def copy_groups(files: list[Path], digest: dict[Path, str]) -> dict[str, str]:
    """Each content (sha256) → its group: identical bytes, and near copies as the dedupe stage
    finds them (a resized or re-encoded copy, the same stone photographed twice in a row), so
    a photo and its copy never sit on both sides of a fold."""
    from pipeline.core.config import load_params
    from pipeline.core.groups import UnionFind
    from pipeline.stages import dedupe

    uf = UnionFind()
    for sha in digest.values():
        uf.find(sha)
    pairs = dedupe.near_copies([(digest[f], str(f)) for f in files],
                               load_params(ROOT / "params.yaml").dedupe)
    for a, b in zip(pairs["a"], pairs["b"], strict=True):
        uf.union(a, b)
    return {sha: uf.find(sha) for sha in digest.values()}


def deal_folds(folder: Path, folds: int, seed: int = 0) -> dict[Path, int]:
    """Each file of ``folder/<class>/*`` → its fold (0 … folds − 1): per class, the groups of
    copies (:func:`copy_groups`) in a seeded order, each to the fold with the fewest of that
    class's files so far; a group anywhere in the folder stays in one fold."""
    group = _photos(folder)
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for cdir in sorted(c for c in folder.iterdir() if c.is_dir()):
        mine = [g for f, g in group.items() if f.parent == cdir]
        size = [0] * folds
        for g in mine:  # groups already dealt with another class
            if g in fold_of:
                size[fold_of[g]] += 1
        todo = sorted(set(mine) - set(fold_of))
        for i in rng.permutation(len(todo)):
            k = min(range(folds), key=lambda j: (size[j], j))
            fold_of[todo[i]] = k
            size[k] += mine.count(todo[i])
    return {f: fold_of[g] for f, g in group.items()}


def link_fold(folder: Path, dest: Path, folds: int, fold: int, seed: int = 0) -> dict:
    """Symlink fold ``fold`` of ``folder`` into ``dest/test`` and the rest into ``dest/train``."""
    return _link({f: "test" if k == fold else "train"
                  for f, k in deal_folds(folder, folds, seed).items()}, dest)


def paired(csvs: list[Path], rounds: int = 10000, seed: int = 0) -> dict:
    """The model against the raw-photo probe on the same external photos (``external.csv`` of
    each fold): top-1 of each, the difference, its paired bootstrap 95 % interval, and
    McNemar's exact two-sided p on the photos only one of them got right — over every photo
    (a photo of a class the curated dataset lost counts as wrong for the model; the probe,
    trained on the raw photos, still knows it) and over the classes the model knows (what
    ``evaluate.external`` reports)."""
    import pandas as pd

    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    df = df[df["error"].isna()]
    truth = df["class"].fillna(df["actual"])
    m = df["correct"].fillna(False).astype(bool).to_numpy()
    b = (df["baseline_predicted"] == truth).to_numpy()
    known = df["class"].notna().to_numpy()
    return {**_compare(m, b, rounds, seed), "known_classes": _compare(m[known], b[known], rounds, seed),
            "unknown_class_photos": int((~known).sum())}


def _compare(m: np.ndarray, b: np.ndarray, rounds: int, seed: int) -> dict:
    from scipy.stats import binomtest

    if not len(m):
        return {"photos": 0}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(m), (rounds, len(m)))
    diff = m[idx].mean(1) - b[idx].mean(1)
    only_m, only_b = int((m & ~b).sum()), int((b & ~m).sum())
    p = binomtest(only_m, only_m + only_b, 0.5).pvalue if only_m + only_b else 1.0
    return {"photos": len(m), "model_top1": round(float(m.mean()), 4),
            "probe_top1": round(float(b.mean()), 4),
            "model_minus_probe": round(float(m.mean() - b.mean()) * 100, 2),
            "ci95_points": [round(float(np.percentile(diff, q)) * 100, 2) for q in (2.5, 97.5)],
            "only_model_right": only_m, "only_probe_right": only_b,
            "mcnemar_p": round(float(p), 4)}


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


def run_folder(name: str, work: Path, share: float, seed: int, over: dict,
               fold: tuple[int, int] | None = None) -> dict:
    """One run: hold aside (a share, or fold ``fold[0]`` of ``fold[1]``), curate, train, evaluate."""
    from pipeline import dataset
    from pipeline.core.config import load_params
    from pipeline.core.stageio import StageIO
    from pipeline.stages import evaluate, train

    parts = (link_fold(REALDATA / name, work / "photos", fold[1], fold[0], seed) if fold
             else hold_aside(REALDATA / name, work / "photos", share, seed))
    from pipeline.project import KINDS

    # the defaults `gemcurate init --kind jewelry|gems` writes
    kind = param_overrides([f"{k}={v}" for k, v in KINDS.get(name, {}).items()])
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
    (work / "internal.json").write_text(json.dumps({"split": em["split"], "images": em["images"],
                                                    "top1": em["top1"]}))
    return {"photos": parts, **info, "train_s": round(t_train, 1), "epochs": tm["epochs"],
            "internal": {"split": em["split"], "images": em["images"], "top1": em["top1"],
                         "top3": em["top3"], "top5": em["top5"]},
            "external": {k: ext.get(k) for k in ("images", "scored", "top1", "top3", "top5",
                                                  "cropped", "unknown_classes", "vs_baseline_top1")},
            "retrieval": em.get("retrieval"),
            "baseline": {k: ext["baseline"].get(k) for k in ("top1", "top3", "top5", "train_images")}
            if ext.get("baseline") else None,
            "evaluate_dir": str(work / "evaluate")}


def cross_validate(name: str, work: Path, folds: int, only: str, seed: int, over: dict) -> dict:
    """``folds`` runs (or the ``only`` ones), each in ``work/fold<k>``; the summary is over
    every fold whose evaluation exists under ``work`` (runs done earlier count)."""
    if folds < 2:
        raise SystemExit("--folds: at least 2")
    todo = [int(k) for k in only.split(",")] if only else list(range(folds))
    runs = {}
    for k in todo:
        runs[k] = run_folder(name, work / f"fold{k}", 0.0, seed, over, fold=(k, folds))
        print(name, f"fold {k}", json.dumps(runs[k]), flush=True)
    done = [work / f"fold{k}" / "evaluate" / "external.csv" for k in range(folds)]
    done = [c for c in done if c.exists()]
    internal = [json.loads((c.parent.parent / "internal.json").read_text())
                for c in done if (c.parent.parent / "internal.json").exists()]
    hit = sum(i["top1"] * i["images"] for i in internal)
    return {"folds": folds, "folds_done": len(done), "runs": runs, **paired(done),
            "internal_top1": round(hit / max(1, sum(i["images"] for i in internal)), 4),
            "internal_images": sum(i["images"] for i in internal)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folders", default="jewelry,gems")
    ap.add_argument("--work", required=True, help="the held-aside links, data and models go here")
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a params override for every stage (crop, split, augment, train …)")
    ap.add_argument("--folds", type=int, default=0, help="K-fold: every photo held aside once")
    ap.add_argument("--fold", default="", help="with --folds: only these folds (0,1,…)")
    ap.add_argument("--tag", default="default")
    ap.add_argument("--split-only", action="store_true", help="only write the held-aside folders")
    a = ap.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"{REALDATA} absent")
    over = param_overrides(a.set)
    out = {"tag": a.tag, "overrides": a.set, "seed": a.seed, "share": a.share}
    for name in a.folders.split(","):
        work = Path(a.work) / name
        if a.folds:
            out[name] = cross_validate(name, work, a.folds, a.fold, a.seed, over)
            continue
        if a.split_only:
            out[name] = hold_aside(REALDATA / name, work / "photos", a.share, a.seed)
            continue
        out[name] = run_folder(name, work, a.share, a.seed, over)
        print(name, json.dumps(out[name]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
