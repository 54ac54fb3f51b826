"""Training throughput: the input pipeline from shards against the model's steps, and the
demo dataset's training time.

Prints, in one run (images/s): reading and decoding the shards (``pipeline.dataset.load``),
the frozen backbone's forward pass (what ``cache_features`` computes once per image), a
full training step with everything unfrozen (fine-tuning), inference of the saved
classifier; then, with ``--train``, the wall time of the train stage on the dataset with
the current ``params.yaml``. The input pipeline must outrun the step it feeds, or the
device waits.

Usage:
    .venv/bin/python bench/train.py [--dataset data/dataset] [--train] [--model efficientnet_lite0]
    .venv/bin/python bench/train.py --synthetic 512      # no dataset: random images (GPU check)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline import dataset  # noqa: E402
from pipeline.core.config import load_params  # noqa: E402
from pipeline.models import zoo  # noqa: E402
from pipeline.stages import train  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default=str(ROOT / "data" / "dataset"))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--synthetic", type=int, default=0, help="random images instead of a dataset")
    ap.add_argument("--train", action="store_true", help="also time the train stage on --dataset")
    ap.add_argument("--mixed-precision", action="store_true")
    a = ap.parse_args()
    import keras
    import tensorflow as tf

    if a.mixed_precision and tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    out: dict = {"devices": train.devices(), "model": a.model, "batch": a.batch, "size": a.size}
    if a.synthetic:
        x = np.random.default_rng(0).integers(0, 256, (a.synthetic, a.size, a.size, 3)).astype("uint8")
        y = np.random.default_rng(1).integers(0, 10, a.synthetic)
        classes = 10
    else:
        t = time.perf_counter()
        n = sum(len(b[1]) for b in dataset.load(a.dataset, "train", batch_size=a.batch, image_size=a.size))
        out["input_pipeline_img_s"] = rate(n, time.perf_counter() - t)
        x, y, _ = dataset.as_arrays(a.dataset, "val", image_size=a.size)
        classes = len(dataset.class_names(a.dataset))
    backbone, dim = zoo.build_backbone(a.model, a.size)
    model = zoo.classifier(backbone, zoo.head(dim, classes, 0.2), frozen_bn=a.model != "gemnet")
    n = min(len(x), 8 * a.batch)
    backbone.predict_on_batch(x[: a.batch])  # warm up (graph building)
    t = time.perf_counter()
    for i in range(0, n, a.batch):
        backbone.predict_on_batch(x[i:i + a.batch])
    out["frozen_forward_img_s"] = rate(n, time.perf_counter() - t)
    backbone.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-5), loss="sparse_categorical_crossentropy")
    model.train_on_batch(x[: a.batch], y[: a.batch])
    t = time.perf_counter()
    for i in range(0, n, a.batch):
        model.train_on_batch(x[i:i + a.batch], y[i:i + a.batch])
    out["finetune_step_img_s"] = rate(n, time.perf_counter() - t)
    t = time.perf_counter()
    model.predict(x[:n], batch_size=a.batch, verbose=0)
    out["inference_img_s"] = rate(n, time.perf_counter() - t)
    out["mixed_precision"] = keras.mixed_precision.global_policy().name
    if a.train and not a.synthetic:
        params = load_params(ROOT / "params.yaml", {"train": {"model": a.model}})
        t = time.perf_counter()
        _, m = train.run(dataset.read_manifest(a.dataset), params, dataset_dir=a.dataset,
                         model_dir=Path("/tmp/gemcurate-bench-model"))
        out["train_stage_s"] = round(time.perf_counter() - t, 1)
        out["train_val_top1"] = m["val"].get("top1")
        out["train_seconds"] = m["seconds"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
