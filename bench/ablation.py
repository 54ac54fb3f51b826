"""Does curation help? The same model trained on the curated dataset and on one built the
published way, both scored on the same curated, group-split test set.

(a) curated: ``data/dataset`` as the pipeline made it (duplicates, certificates and hands
    out, stones cropped, a group-aware split, variants of train photos only).
(b) uncurated, as the published notebooks did it: every downloaded image that decodes
    (certificates, hands and duplicates left in), resized whole to the model's size, no
    crop, augmented with the same rotations and mirrors up to the same per-class target,
    and only then split at random into train / val / test — except the photos of the
    curated test groups, which (b) never sees (else it would be scored on its own train).

Both train EfficientNet-Lite0's frozen ImageNet features with the same head, epochs,
learning rate and early stopping. Printed: (a) and (b) on the curated test set, and (b) on
its own random test split — optimistic, because rotated copies of its test photos are in
its train split (the leak the curated split prevents).

Usage (after the main job, which leaves data/ with the raw images and data/dataset):
    .venv/bin/python bench/ablation.py [--data-dir data]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import dataset  # noqa: E402
from pipeline.core.config import load_params  # noqa: E402
from pipeline.core.imageio import ImageError, load_rgb  # noqa: E402
from pipeline.core.manifest import read_manifest  # noqa: E402
from pipeline.models import zoo  # noqa: E402
from pipeline.stages import evaluate  # noqa: E402


def features(backbone, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(backbone.predict_on_batch(images[i:i + batch]), np.float32)
                           for i in range(0, len(images), batch)]) if len(images) else np.zeros((0, 1280))


def fit_head(ftr, ytr, fva, yva, classes: int, p) -> object:
    import keras

    keras.utils.set_random_seed(p.seed)
    head = zoo.head(ftr.shape[1], classes, p.dropout)
    head.compile(optimizer=keras.optimizers.Adam(p.head_lr), loss="sparse_categorical_crossentropy")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=p.patience, restore_best_weights=True)
    head.fit(ftr, ytr, validation_data=(fva, yva), epochs=p.head_epochs, batch_size=p.batch_size,
             callbacks=[stop], verbose=0)
    return head


def scores(head, f, y) -> dict:
    probs = np.asarray(head.predict(f, verbose=0), np.float64)
    return {f"top{k}": round(evaluate.top_k_accuracy(probs, y, k), 4) for k in (1, 3, 5)}


def rotations(img: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``n`` of the 15 non-identity 45°-step rotations × mirror (white corners)."""
    out = []
    plan = [(a, m) for m in (False, True) for a in range(0, 360, 45)][1:]
    for k in rng.permutation(len(plan))[:n]:
        angle, mirror = plan[k]
        x = img[:, ::-1] if mirror else img
        c = img.shape[0] / 2
        mat = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        out.append(cv2.warpAffine(np.ascontiguousarray(x), mat, img.shape[:2][::-1],
                                  borderValue=(255, 255, 255)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(ROOT / "data"))
    a = ap.parse_args()
    data = Path(a.data_dir)
    p = load_params(ROOT / "params.yaml").train
    target = load_params(ROOT / "params.yaml").augment.target_per_class
    size = p.image_size
    backbone, _ = zoo.build_backbone("efficientnet_lite0", size)
    ds_dir = data / "dataset"
    names = dataset.class_names(ds_dir)
    index = {n: i for i, n in enumerate(names)}
    # (a) curated
    cur = {s: dataset.as_arrays(ds_dir, s, image_size=size) for s in ("train", "val", "test")}
    fa = {s: features(backbone, cur[s][0]) for s in cur}
    head_a = fit_head(fa["train"], cur["train"][1], fa["val"], cur["val"][1], len(names), p)
    # (b) uncurated: every image that decodes, resized whole, augmented, then split at random
    raw = read_manifest(data / "manifests" / "raw.parquet")
    raw = raw[raw["path"].notna() & raw["excluded_reason"].isna() & raw["label"].isin(index)]
    # the same test set for both: no photo of a curated test group (its product, or any
    # product sharing a duplicate with it) may be in (b), or (b) is scored on what it saw
    sp = read_manifest(data / "manifests" / "split.parquet")
    held = set(sp.loc[sp["split"] == "test", "split_group"])
    held_ids = set(sp.loc[sp["split_group"].isin(held), "image_id"])
    raw = raw[~raw["image_id"].isin(held_ids)]
    rng = np.random.default_rng(p.seed)
    photos, labels = [], []
    for rel, lab in zip(raw["path"], raw["label"], strict=True):
        try:
            img = load_rgb(data / "store" / rel, max_side=2 * size).array
        except (ImageError, OSError):
            continue
        photos.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        labels.append(index[lab])
    labels = np.array(labels)
    xs, ys = [], []
    for c in range(len(names)):
        idx = np.flatnonzero(labels == c)
        xs += [photos[i] for i in idx]
        ys += [c] * len(idx)
        need = max(0, target - len(idx))
        per = -(-need // max(1, len(idx))) if len(idx) else 0
        made = 0
        for i in idx:
            for v in rotations(photos[i], min(per, 15), rng):
                if made >= need:
                    break
                xs.append(v)
                ys.append(c)
                made += 1
    xb, yb = np.stack(xs), np.array(ys)
    order = rng.permutation(len(xb))  # the published way: split after augmenting, at random
    n_tr, n_va = int(0.7 * len(order)), int(0.15 * len(order))
    tr, va, te = order[:n_tr], order[n_tr:n_tr + n_va], order[n_tr + n_va:]
    fb = features(backbone, xb)
    head_b = fit_head(fb[tr], yb[tr], fb[va], yb[va], len(names), p)
    out = {
        "dataset": str(ds_dir), "classes": len(names),
        "curated_train_images": len(cur["train"][1]), "uncurated_images": len(xb),
        "uncurated_photos": len(photos), "curated_test_images": len(cur["test"][1]),
        "(a) curated → curated test": scores(head_a, fa["test"], cur["test"][1]),
        "(b) uncurated → curated test": scores(head_b, fa["test"], cur["test"][1]),
        "(b) uncurated → its own random test (leaky)": scores(head_b, fb[te], yb[te]),
    }
    print(json.dumps(out, indent=1))
    dest = ROOT / "bench" / "out"
    dest.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"setup": k, **v} for k, v in out.items() if isinstance(v, dict)]).to_csv(
        dest / "ablation.csv", index=False)


if __name__ == "__main__":
    main()
