"""Train and evaluate on the real sample photos of ../shared/realdata, through the pipeline.

For each folder (``jewelry``: 5 classes, ``gems``: 20 classes) the demo storefront serves
it in folder mode, gemcurate scrapes it, curates it (dedupe → filter → crop → split with
the group-aware split → augment → validate → export) and trains and evaluates each model
asked for, printing the test split's top-1/3/5 and macro F1. The photos never leave
../shared; nothing here is committed.

Usage:
    .venv/bin/python bench/realdata_train.py [--folders jewelry,gems] [--models efficientnet_lite0,gemnet]
        [--gemnet-size 128] [--work DIR] [--set finetune_epochs=5 --set unfreeze=top]
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
REALDATA = ROOT.parent / "shared" / "realdata"

from bench import param_overrides  # noqa: E402
from pipeline import dataset  # noqa: E402
from pipeline.core.config import load_params  # noqa: E402
from pipeline.stages import evaluate, train  # noqa: E402


def curate(folder: Path, work: Path, cut_by_border: str | None = None) -> dict:
    """Scrape ``folder`` in folder mode and curate it (``bench/holdout.py``'s curation, with
    ``crop.cut_by_border``: keep for jewelry by default, where a piece often fills the frame)."""
    from bench.holdout import curate as curate_folder

    cut = cut_by_border or ("keep" if folder.name == "jewelry" else "review")
    info = curate_folder(folder, work, {"crop": {"cut_by_border": cut}})
    params = load_params(ROOT / "params.yaml", {"data": {"data_dir": str(work / "data")},
                                                "crop": {"cut_by_border": cut}})
    return {"params": params, "dataset": work / "data" / "dataset", **info}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", default="jewelry,gems")
    ap.add_argument("--models", default="efficientnet_lite0,gemnet")
    ap.add_argument("--gemnet-size", type=int, default=128, help="gemnet trains from scratch: CPU-sized")
    ap.add_argument("--gemnet-folders", default="jewelry")
    ap.add_argument("--work", help="keep the curated data here (reruns skip the curation)")
    ap.add_argument("--cut-by-border", choices=["review", "keep"],
                    help="crop.cut_by_border for every folder (default: keep for jewelry only)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="train.KEY override for every model, e.g. finetune_epochs=5 (YAML value)")
    a = ap.parse_args()
    extra = param_overrides(a.set, "train").get("train", {})
    if not REALDATA.is_dir():
        raise SystemExit(f"{REALDATA} absent")
    out = {}
    for name in a.folders.split(","):
        work = Path(a.work) / name if a.work else Path(tempfile.mkdtemp(prefix=f"rd-{name}-"))
        work.mkdir(parents=True, exist_ok=True)
        info = curate(REALDATA / name, work, a.cut_by_border)
        params = info.pop("params")
        ds_dir = info.pop("dataset")
        out[name] = info
        for model in a.models.split(","):
            if model == "gemnet" and name not in a.gemnet_folders.split(","):
                continue
            over = {"model": model, **extra}
            if model == "gemnet":
                over["image_size"] = a.gemnet_size
            p = load_params(ROOT / "params.yaml", {"train": over, "data": {"data_dir": str(work / "data")}})
            t = time.perf_counter()
            _, tm = train.run(dataset.read_manifest(ds_dir), p, dataset_dir=ds_dir,
                              model_dir=work / f"model-{model}")
            t_train = time.perf_counter() - t
            for tta in ("none", "flip"):  # the same model scored without and with the mirror
                pe = load_params(ROOT / "params.yaml", {"train": over, "evaluate": {"tta": tta},
                                                        "data": {"data_dir": str(work / "data")}})
                _, em = evaluate.run(dataset.read_manifest(ds_dir), pe, dataset_dir=ds_dir,
                                     model_dir=work / f"model-{model}", out_dir=work / f"eval-{model}")
                print(name, model, f"tta={tta}", {k: em[k] for k in ("top1", "top3", "top5")}, flush=True)
            out[name][model] = {"tta": "flip", "top1": em["top1"], "top3": em["top3"], "top5": em["top5"],
                                "train_s": round(t_train, 1),
                                "macro_f1": em["macro"]["f1"], "val_top1": tm["val"].get("top1"),
                                "epochs": tm["epochs"], "cosine": em["cosine"],
                                "test_images": em["images"], "seconds": round(time.perf_counter() - t, 1),
                                "most_confused": em["most_confused"][:3]}
            print(name, model, json.dumps(out[name][model]), flush=True)
        del params
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
