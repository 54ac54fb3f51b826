"""Label issues measured: move a seeded share of real photos to a wrong class, curate the
catalog, and count how many the ``labels`` stage finds (issue: labels you can trust).

For each of ``../shared/realdata/jewelry`` and ``gems``:

1. **two catalogs** of symbolic links under ``--work`` (the photos never leave ../shared):
   ``clean/`` as the store has them, and ``noisy/`` with ``--noise`` of the files (seeded, by
   file; byte-identical files move together) in another class, drawn at random;
2. **curate** each as a store: the demo storefront serves it in folder mode, then scrape →
   dedupe (the shared embedding) → filter → labels;
3. **score**: on ``noisy/``, recall (moved photos flagged) and precision (flags that are
   moved photos), for each ``labels.filter_by`` rule asked for; on ``clean/``, how many
   flags the store's own labels get, listed for a look by eye.

**Ablation** (``--ablation``): a seeded fifth of each class is held aside first (clean,
``bench/holdout.py``), the noise goes into the rest only, and the noisy rest is curated and
trained twice — label issues only flagged (``labels.hold_out: false``) and held out of the
dataset (``true``) — then both models are scored on the same clean held-aside photos.

Usage:
    .venv/bin/python bench/label_noise.py --work /tmp/labelnoise [--folders jewelry,gems]
        [--noise 0.05] [--seed 0] [--rules prune_by_noise_rate,both,low_self_confidence]
        [--colour-weights 0,0.5]
    .venv/bin/python bench/label_noise.py --ablation --work /tmp/labelnoise --folders jewelry
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

from pipeline.stages.evaluate import IMAGE_EXTS  # noqa: E402


def noisy_catalogs(folder: Path, dest: Path, noise: float, seed: int) -> dict[str, tuple[str, str]]:
    """Symlink ``folder/<class>/*`` into ``dest/clean`` and ``dest/noisy``; return
    {sha256 of a moved photo: (its class, the class it was moved to)}. Idempotent."""
    classes = sorted(c.name for c in folder.iterdir() if c.is_dir())
    files = sorted(f for c in classes for f in sorted((folder / c).iterdir())
                   if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    rng = np.random.default_rng(seed)
    shas = sorted(set(digest.values()))
    moved = {shas[i] for i in rng.permutation(len(shas))[: round(noise * len(shas))]}
    target: dict[str, tuple[str, str]] = {}
    for sha in sorted(moved):
        own = sorted({f.parent.name for f in files if digest[f] == sha})
        others = [c for c in classes if c not in own]
        target[sha] = (own[0], others[int(rng.integers(len(others)))])
    for f in files:
        moved_to = target[digest[f]][1] if digest[f] in target else f.parent.name
        for part, cls in (("clean", f.parent.name), ("noisy", moved_to)):
            link = dest / part / cls / f.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(f)
    return target


def curate_to_filter(catalog: Path, work: Path, kind: dict):
    """Serve ``catalog`` in folder mode, scrape, dedupe, filter; the params and the
    filter manifest (reused when ``work`` already holds it)."""
    from pipeline.core.config import load_params
    from pipeline.core.manifest import manifest_path, read_manifest
    from pipeline.demo import process
    from pipeline.stages import dedupe
    from pipeline.stages import filter as filt
    from pipeline.stages.scrape import scrape

    data = work / "data"
    params = load_params(ROOT / "params.yaml", {
        **kind, "data": {"data_dir": str(data)},
        "scrape": {"max_rate": 1000.0, "default_rate": 1000.0, "concurrency": 8, "progress": False,
                   "site": str(ROOT / "sites" / "demo.yaml")}})
    if not manifest_path(data, "filter").exists():
        with process.storefront(["--catalog", str(catalog), "--rate-limit", "1000", "--burst", "200",
                                 "--faults", "0"], cwd=ROOT) as store:
            res = scrape(params, base_url=store.base_url)
            assert res.status == "complete", res.message
        dedupe.main(params, progress=False)
        filt.main(params, progress=False)
    return params, read_manifest(manifest_path(data, "filter"))


def judge(df, params, rule: str, colour_weight: float | None = None):
    """labels.run with ``rule`` (and ``colour_weight`` when given); the manifest and its metrics."""
    import dataclasses

    from pipeline.core.embedding import EmbeddingCache
    from pipeline.core.stageio import StageIO
    from pipeline.stages import labels

    lab = dataclasses.replace(params.labels, filter_by=rule)
    if colour_weight is not None:
        lab = dataclasses.replace(lab, colour_weight=colour_weight)
    p = dataclasses.replace(params, labels=lab)
    return labels.run(df, p, embeddings=EmbeddingCache.for_data_dir(params.data.data_dir),
                      store_root=StageIO.of(params).store_root)


def run_folder(name: str, work: Path, noise: float, seed: int, rules: list[str],
               colour_weights: list[float | None] = (None,)) -> dict:
    kind = {"crop": {"cut_by_border": "keep"}, "filter": {"hand_policy": "keep"}} \
        if name == "jewelry" else {}
    moved = noisy_catalogs(REALDATA / name, work / name / "photos", noise, seed)
    out: dict = {"moved": len(moved)}
    for part in ("noisy", "clean"):
        t = time.perf_counter()
        params, df = curate_to_filter(work / name / "photos" / part, work / name / part, kind)
        live = df[df["excluded_reason"].isna()]
        out[f"{part}_curate_s"] = round(time.perf_counter() - t, 1)
        out[f"{part}_live"] = int(live["image_id"].nunique())
        # moved photos the curation kept (a moved photo may be dropped as a duplicate or junk)
        target = {s for s in moved if s in set(live["image_id"])}
        for rule, weight in ((r, w) for r in rules for w in colour_weights):
            t = time.perf_counter()
            res, m = judge(df, params, rule, weight)
            flagged = res[res["label_issue"].fillna(False).astype(bool)].drop_duplicates("image_id")
            ids = set(flagged["image_id"])
            row = {"flagged": len(ids), "judged": m["judged"], "probe_agreement": m.get("probe_agreement"),
                   "seconds": round(time.perf_counter() - t, 1)}
            if part == "noisy":
                hit = ids & target
                row.update(moved_live=len(target), found=len(hit),
                           recall=round(len(hit) / max(len(target), 1), 3),
                           precision=round(len(hit) / max(len(ids), 1), 3),
                           suggestion_is_true_class=round(float(np.mean([
                               r["label_suggestion"] == moved[r["image_id"]][0] for _, r in
                               flagged[flagged["image_id"].isin(hit)].iterrows()])) if hit else 0.0, 3))
            else:
                row["examples"] = [
                    {"file": str(u).rsplit("/", 1)[-1], "label": lab, "suggestion": s,
                     "p": round(float(p), 2), "quality": round(float(q), 3)}
                    for u, lab, s, p, q in flagged.sort_values("label_quality")[
                        ["source_url", "label", "label_suggestion", "label_suggestion_p", "label_quality"]
                    ].itertuples(index=False)][:40]
            out.setdefault(part, {})[rule if weight is None else f"{rule} colour_weight={weight}"] = row
    return out


def ablation(name: str, work: Path, noise: float, seed: int) -> dict:
    """Noisy training photos, label issues in vs held out, one clean external test."""
    from bench.holdout import curate, hold_aside
    from pipeline import dataset
    from pipeline.core.config import load_params
    from pipeline.core.stageio import StageIO
    from pipeline.stages import evaluate, train

    base = work / name / "ablation"
    hold_aside(REALDATA / name, base / "photos", 0.2, seed)          # clean test, clean rest
    moved = noisy_catalogs(base / "photos" / "train", base / "train", noise, seed)
    kind = {"crop": {"cut_by_border": "keep", "mode": "full"}, "filter": {"hand_policy": "keep"},
            "augment": {"rotation_step": 360}, "export": {"captions": "jewelry"}} \
        if name == "jewelry" else {}                                     # gemcurate init --kind
    out: dict = {"moved": len(moved)}
    for held in (False, True):
        sections = {**kind, "labels": {"hold_out": held}}
        run_dir = base / ("held_out" if held else "flagged")
        info = curate(base / "train" / "noisy", run_dir, sections)
        ds_dir = run_dir / "data" / "dataset"
        p = load_params(ROOT / "params.yaml", {**sections, "data": {"data_dir": str(run_dir / "data")},
                                                "evaluate": {"external": [str(base / "photos" / "test")]}})
        ds = dataset.read_manifest(ds_dir)
        in_train = set(ds.loc[ds["split"] == "train", "image_id"])
        t = time.perf_counter()
        train.run(ds, p, dataset_dir=ds_dir, model_dir=run_dir / "model")
        io = StageIO.of(p)
        _, em = evaluate.run(ds, p, dataset_dir=ds_dir, model_dir=run_dir / "model",
                             out_dir=run_dir / "evaluate", plots_dir=run_dir / "plots", raw=io.read("raw"),
                             data_dir=io.data_dir, store_root=io.store_root)
        ext = em["external"]
        out["held_out" if held else "flagged"] = {
            **info, "moved_in_train": len(set(moved) & in_train),
            "train_s": round(time.perf_counter() - t, 1),
            "internal_top1": em.get("top1"), "internal_images": em["images"],
            "external": {k: ext.get(k) for k in ("scored", "top1", "top3", "top5")},
            "retrieval": em.get("retrieval"), "probe_top1": (ext.get("baseline") or {}).get("top1")}
        print(json.dumps({name: out}, indent=1), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/labelnoise")
    ap.add_argument("--folders", default="jewelry,gems")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colour-weights", default="",
                    help="labels.colour_weight values to compare (default: params.yaml's)")
    ap.add_argument("--rules", default="prune_by_noise_rate,both,confident_learning,low_self_confidence")
    ap.add_argument("--out", default=None)
    ap.add_argument("--ablation", action="store_true", help="train on noisy photos, issues in vs out")
    a = ap.parse_args()
    if a.ablation:
        res = {n: ablation(n, Path(a.work), a.noise, a.seed) for n in a.folders.split(",")}
        path = Path(a.out or ROOT / "bench" / "out" / "label_ablation.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {path}")
        return
    a.out = a.out or str(ROOT / "bench" / "out" / "label_noise.json")
    rules = a.rules.split(",")
    weights = [float(w) for w in a.colour_weights.split(",")] if a.colour_weights else [None]
    result = {"noise": a.noise, "seed": a.seed, "folders": {}}
    for name in a.folders.split(","):
        result["folders"][name] = run_folder(name, Path(a.work), a.noise, a.seed, rules, weights)
        print(json.dumps({name: {k: v for k, v in result["folders"][name].items() if k != "clean"}},
                         indent=1), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
