"""Evaluate stage: the trained model on the held-out split, in the published projects' terms.

* top-1/3/5 accuracy; macro and per-class precision, recall, F1; per-class false-positive
  and false-negative rates (the jewelry project);
* the ``report_classes`` highest- and lowest-precision classes (a plot, as in the gemstone
  report) and its misclassification table: for each class, the share most often predicted
  as another class and the second ("Blue Topaz: 71.0% as Swiss Blue Topaz, 7.9% as London
  Blue Topaz");
* the confusion matrix as a DVC plot (``actual,predicted`` rows, ``template: confusion``)
  and as a row-normalised PNG, and a contact sheet of misclassified images with their top-3;
* the penultimate-layer embedding of every photo of the dataset (``embeddings.parquet``, what
  ``gemcurate similar`` searches; not the augmented variants, which are rotations and mirrors
  of those photos: at ``target_per_class: 300`` they are ~90 % of an 87-class training split,
  and no search, retrieval figure or review suggestion needs them) and the mean cosine
  similarity within and between classes (the jewelry project's "≥ 0.92 within a class",
  measured);
* ``data/metrics/evaluate.json`` and a model card, ``models/MODEL_CARD.md``;
* with ``evaluate.external`` (labelled folders ``<class>/<images>`` of photos that never went
  through gemcurate): every photo scored exactly as ``gemcurate predict`` scores one (the
  pipeline's crop, or the whole photo when no box is trustworthy; the same test-time
  mirror), per image in ``data/evaluate/external.csv``, with its own per-class table,
  confusion (``data/plots/external_confusion.csv``, a PNG) and contact sheet of errors;
  classes the model does not know are counted and named. Beside it, in the same run, the
  **raw-photo baseline**: a logistic-regression probe on the frozen ImageNet embedding of
  the raw store photos of the training products (uncurated, uncropped), scored on the same
  photos, so every evaluation says whether the curated dataset beats the raw photos.

Example:
    $ gemcurate evaluate        # after gemcurate train
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import dataset
from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.config import Params
from pipeline.core.cropbox import photo_input
from pipeline.core.imageio import ImageError
from pipeline.core.plots import font, pyplot, save_figure
from pipeline.core.stagerun import StageResult, StageRun, stage
from pipeline.models import zoo
from pipeline.models.torch_legacy import WeightsError

logger = logging.getLogger(__name__)

MODEL_DIR = Path("models")


# --------------------------------------------------------------------------- metrics (pure)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest probabilities."""
    if not len(labels):
        return float("nan")
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion(labels: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """``m[actual, predicted]`` counts."""
    m = np.zeros((classes, classes), np.int64)
    np.add.at(m, (labels, pred), 1)
    return m


def per_class(cm: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1, false-positive and false-negative rate and support per class.

    A class never predicted has precision NaN (not 0: it made no claim to be wrong about).
    """
    tp = np.diag(cm).astype(float)
    support = cm.sum(1).astype(float)
    predicted = cm.sum(0).astype(float)
    n = cm.sum()
    fp, fn = predicted - tp, support - tp
    tn = n - tp - fp - fn
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        fpr = np.where(fp + tn > 0, fp / (fp + tn), np.nan)
        fnr = np.where(support > 0, fn / support, np.nan)
    return pd.DataFrame({"label": names, "precision": precision, "recall": recall, "f1": f1,
                         "fpr": fpr, "fnr": fnr, "support": support.astype(int)})


def misclassification_table(cm: np.ndarray, names: list[str], top: int = 2) -> pd.DataFrame:
    """Per class with errors: the classes it is most often taken for, as shares of its images."""
    rows = []
    for i, name in enumerate(names):
        total = cm[i].sum()
        wrong = [(j, cm[i, j]) for j in np.argsort(-cm[i]) if j != i and cm[i, j] > 0][:top]
        if total == 0 or not wrong:
            continue
        row = {"label": name, "images": int(total), "correct": round(cm[i, i] / total, 4),
               "error": round(1 - cm[i, i] / total, 4)}
        for r, (j, c) in enumerate(wrong, start=1):
            row[f"as_{r}"], row[f"share_{r}"] = names[j], round(c / total, 4)
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values("error", ascending=False, ignore_index=True) if len(out) else out


def describe_errors(table: pd.DataFrame, limit: int = 10) -> list[str]:
    """The gemstone report's sentences: ``Blue Topaz: 71.0% as Swiss Blue Topaz, 7.9% as …``."""
    lines = []
    for r in table.head(limit).itertuples(index=False):
        parts = [f"{getattr(r, f'share_{k}') * 100:.1f}% as {getattr(r, f'as_{k}')}"
                 for k in (1, 2) if isinstance(getattr(r, f"as_{k}", None), str)]
        lines.append(f"{r.label}: {', '.join(parts)}")
    return lines


def cosine_stats(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity over all pairs in the same class and in different classes.

    Exact and linear in the number of images: for unit vectors, the similarities of all
    pairs within a set sum to ``(|Σx|² − n) / 2``, so class sums give every mean without
    forming a single pair.
    """
    if len(emb) < 2:
        return {"within_class": float("nan"), "between_class": float("nan")}
    x = emb.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    total = (float(np.square(x.sum(0)).sum()) - n) / 2
    within, pairs_within = 0.0, 0
    for c in np.unique(labels):
        xc = x[labels == c]
        within += (float(np.square(xc.sum(0)).sum()) - len(xc)) / 2
        pairs_within += len(xc) * (len(xc) - 1) // 2
    pairs_between = n * (n - 1) // 2 - pairs_within
    return {"within_class": round(within / pairs_within, 4) if pairs_within else float("nan"),
            "between_class": round((total - within) / pairs_between, 4) if pairs_between else float("nan")}


def nearest(query: np.ndarray, emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine nearest neighbours: indices and similarities, best first."""
    from pipeline.core.retrieval import VectorIndex

    return VectorIndex(emb, approximate=False).search(query, k)


# --------------------------------------------------------------------------- model


def load_model(model_dir: str | Path):
    """The saved classifier, its labels.json, and its embedding and head parts.

    Raises:
        WeightsError: No trained model there (or it does not load).
    """
    zoo.require_keras()
    import keras

    model_dir = Path(model_dir)
    if not (model_dir / "model.keras").is_file() or not (model_dir / "labels.json").is_file():
        raise WeightsError(f"{model_dir}: no trained model (model.keras + labels.json); run "
                           "`gemcurate train` or `dvc repro train`, or pass --model")
    info = json.loads((model_dir / "labels.json").read_text())
    model = keras.saving.load_model(model_dir / "model.keras", compile=False, safe_mode=True)
    backbone, head = model.get_layer(info["backbone"]), model.get_layer(info["head"])
    return model, info, backbone, head


def embed_all(backbone, directory: Path, size: int, batch: int = 64, flip_split: str | None = None,
              model: str = "") -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """The penultimate-layer embedding of every photo of the dataset (all splits; not the
    augmented variants, whose ``parent_id`` is set).

    With ``flip_split``, also the embeddings of that split's images mirrored left-right (the
    third value, in the order of that split's rows), for test-time augmentation. ``model``
    (``train.model``) picks the fastest way to run the backbone (``zoo.feature_runner``).
    """
    feats, ids, flipped = [], [], []
    run = zoo.feature_runner(backbone, model)
    man = dataset.read_manifest(directory)
    photos = set(man.loc[man["parent_id"].isna(), "image_id"]) if "parent_id" in man else None
    for split in ("train", "val", "test"):
        ds = dataset.load(directory, split, batch_size=batch, image_size=size, shuffle=False,
                          with_ids=True, ids=photos)
        for x, _, i in ds.as_numpy_iterator():
            feats.append(run(x))
            if split == flip_split:
                flipped.append(run(x[:, :, ::-1]))
            ids += [v.decode() for v in i]
    emb = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    if flip_split is None:
        return emb, ids, None
    return emb, ids, (np.concatenate(flipped) if flipped else np.zeros((0, emb.shape[1]), np.float32))


def tta_probs(head, emb: np.ndarray, flipped: np.ndarray | None) -> np.ndarray:
    """Class probabilities from the head; with ``flipped``, the mean over the photo and its mirror.

    Training already mirrors photos (augment.mirror), so a mirrored photo is as much the
    product as the photo; averaging the two softmaxes removes one source of chance.
    """
    if len(emb) == 0:
        return np.zeros((0, 0))
    probs = np.asarray(head.predict(emb, batch_size=512, verbose=0), np.float64)
    if flipped is not None:
        probs = (probs + np.asarray(head.predict(flipped, batch_size=512, verbose=0), np.float64)) / 2
    return probs


# --------------------------------------------------------------------------- stage


# long: the stage's steps in order (embed, score, tables, figures, embeddings, retrieval, external
# test), each a helper
def run(df: pd.DataFrame, params: Params, *, dataset_dir: str | Path, model_dir: str | Path,
        out_dir: str | Path, plots_dir: str | Path | None = None, raw: pd.DataFrame | None = None,
        data_dir: str | Path | None = None, store_root: str | Path | None = None
        ) -> tuple[pd.DataFrame, dict]:
    """Score the model on ``params.evaluate.split``; write plots, tables and embeddings to ``out_dir``.

    Args:
        df: The dataset manifest.
        params: All params (reads ``params.evaluate``).
        dataset_dir: The exported dataset.
        model_dir: ``model.keras`` and ``labels.json``.
        out_dir: Where the figures, tables and ``embeddings.parquet`` go.
        plots_dir: Where ``confusion.csv`` goes for ``dvc plots``.
        raw, data_dir, store_root: The raw manifest, data folder and image store: with
            ``evaluate.external`` set, the raw-photo baseline is fitted on them.

    Returns:
        The per-class table and the metrics dict.

    Example:
        >>> table, metrics = run(manifest, params, dataset_dir="data/dataset", model_dir="models",
        ...                      out_dir="data/evaluate")
    """
    t0 = time.perf_counter()
    p = params.evaluate
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _model, info, backbone, head = load_model(model_dir)
    names = info["classes"]
    if dataset.class_names(dataset_dir, df) != names:
        raise dataset.DatasetError("the dataset's classes differ from the model's labels.json: "
                                   "train again on this dataset version")
    emb, ids, flipped = embed_all(backbone, dataset_dir, info["image_size"],
                                  flip_split=p.split if p.tta == "flip" else None, model=info["model"])
    t_embed = time.perf_counter() - t0
    man = df.set_index("image_id").loc[ids]
    index = {n: i for i, n in enumerate(names)}
    labels = man["label"].astype(str).map(index).to_numpy(np.int64)
    split = eval_split(man["split"], p.split)
    is_eval = (man["split"] == split).to_numpy()
    if flipped is not None and split != p.split:  # the mirrors were made for the split asked for
        flipped = None
    probs = tta_probs(head, emb[is_eval], flipped)
    y = labels[is_eval]
    pred = probs.argmax(1) if len(probs) else np.zeros(0, int)
    cm = confusion(y, pred, len(names))
    table = per_class(cm, names)
    errors = misclassification_table(cm, names)
    cos = cosine_stats(emb, labels)
    metrics = {
        "split": split, "images": int(is_eval.sum()), "classes": len(names),
        **{f"top{k}": round(top_k_accuracy(probs, y, k), 4) for k in p.top_k},
        "macro": {m: round(float(np.nanmean(table[m])), 4) for m in ("precision", "recall", "f1")},
        "cosine": cos, "model": info["model"], "tta": p.tta,
        "seconds": {"embed": round(t_embed, 2), "total": None},
    }
    # files people and DVC read
    eval_ids = np.array(ids)[is_eval]
    rows = pd.DataFrame({"image_id": eval_ids, "actual": [names[i] for i in y],
                         "predicted": [names[i] for i in pred]})
    write_text(out_dir / "confusion.csv", rows[["actual", "predicted"]].to_csv(index=False))
    if plots_dir is not None:  # for `dvc plots` (template: confusion)
        write_text(Path(plots_dir) / "confusion.csv", rows[["actual", "predicted"]].to_csv(index=False))
    write_text(out_dir / "per_class.csv", table.to_csv(index=False))
    write_text(out_dir / "misclassified.csv", errors.to_csv(index=False))
    top3 = np.argsort(-probs, axis=1)[:, :3] if len(probs) else np.zeros((0, 3), int)
    wrong = rows.assign(top3=[[(names[j], float(probs[i, j])) for j in t] for i, t in enumerate(top3)])
    wrong = wrong[wrong["actual"] != wrong["predicted"]]
    _confusion_png(cm, names, out_dir / "confusion.png")
    _precision_png(table, p.report_classes, out_dir / "precision.png")
    _contact_sheet(wrong.head(p.contact_sheet), df, dataset_dir, out_dir / "misclassified.png")
    write_embeddings(out_dir / "embeddings.parquet", ids, man, emb)
    metrics["retrieval"] = retrieval(man, emb, split, Path(data_dir) if data_dir is not None else None)
    write_review_top(out_dir / "review_top.parquet", man, emb, head, names)
    if plots_dir is not None and not p.external:  # a declared DVC plot: present, empty
        write_text(Path(plots_dir) / "external_confusion.csv", "actual,predicted\n")
    if p.external:
        metrics["external"] = external_test(
            _model, info, params, out_dir, Path(plots_dir) if plots_dir is not None else None,
            raw=raw, ds=df, data_dir=Path(data_dir) if data_dir is not None else None,
            store_root=Path(store_root) if store_root is not None else None)
        ext = metrics["external"]
        logger.info("evaluate: external top-1 %s on %d photos (baseline %s)", ext.get("top1"),
                    ext["scored"], (ext.get("baseline") or {}).get("top1"))
    metrics["seconds"]["total"] = round(time.perf_counter() - t0, 2)
    metrics["highest_precision"] = _ranked(table, p.report_classes, ascending=False)
    metrics["lowest_precision"] = _ranked(table, p.report_classes, ascending=True)
    metrics["most_confused"] = describe_errors(errors, p.report_classes)
    return table, metrics


def retrieval(man: pd.DataFrame, emb: np.ndarray, split: str, data_dir: Path | None) -> dict:
    """Nearest-product search measured: each ``split`` photo's nearest train photos (never
    its own product or duplicate cluster), precision@1/5/10 of its class, with the trained
    model's embedding and with the shared embedding the curation computed (``data/embeddings``)."""
    from pipeline.core.embedding import EmbeddingCache
    from pipeline.core.retrieval import precision_at_k

    photo = man["parent_id"].isna().to_numpy() if "parent_id" in man else np.ones(len(man), bool)
    q = photo & (man["split"] == split).to_numpy()
    b = photo & (man["split"] == "train").to_numpy()
    group_col = "split_group" if "split_group" in man else "product_id"
    groups = man[group_col].astype(str).to_numpy()
    labels = man["label"].astype(str).to_numpy()
    out = {"model": precision_at_k(emb[q], labels[q], groups[q], emb[b], labels[b], groups[b])}
    if data_dir is not None:
        shared, found = EmbeddingCache.for_data_dir(data_dir).get(list(man.index))
        qs, bs = q & found, b & found
        if qs.any() and bs.any():
            out["shared"] = precision_at_k(shared[qs], labels[qs], groups[qs], shared[bs], labels[bs],
                                           groups[bs])
    return out


def write_review_top(path: Path, man: pd.DataFrame, emb: np.ndarray, head, names: list[str]) -> None:
    """The trained model's three most likely classes for every photo of the dataset (not the
    made variants): the review app offers them first as relabel keys."""
    photo = man["parent_id"].isna().to_numpy() if "parent_id" in man else np.ones(len(man), bool)
    probs = tta_probs(head, emb[photo], None) if photo.any() else np.zeros((0, len(names)))
    top = np.argsort(-probs, axis=1)[:, :3]
    table = pd.DataFrame({"image_id": np.asarray(man.index)[photo],
                          "top": [json.dumps([[names[j], round(float(probs[i, j]), 4)] for j in t])
                                  for i, t in enumerate(top)]})
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def eval_split(splits: pd.Series, wanted: str) -> str:
    """The split to score: ``wanted``, or the other held-out one when ``wanted`` is empty
    (a two-way split, ``split.test: 0``, has no test images: val is scored, and said)."""
    have = set(splits.dropna())
    if wanted in have:
        return wanted
    other = "val" if wanted == "test" else "test"
    if other in have:
        logger.warning("evaluate: the dataset has no %s images (split.%s: 0?): scoring the %s split",
                       wanted, wanted, other)
        return other
    logger.warning("evaluate: the dataset has no test or val images: no internal figure "
                   "(set evaluate.external to score photos from outside)")
    return wanted


# --------------------------------------------------------------------------- external test
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def external_photos(folders: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """``folder, path, actual`` for every image file under ``<folder>/<class>/``, sorted.

    Raises:
        DatasetError: A folder is missing or holds no ``<class>/<image>`` files.
    """
    rows = []
    for folder in folders:
        d = Path(folder)
        if not d.is_dir():
            raise dataset.DatasetError(f"evaluate.external: {d} is not a folder of <class>/<images>")
        n = len(rows)
        for cdir in sorted(x for x in d.iterdir() if x.is_dir()):
            rows += [{"folder": str(d), "path": str(f), "actual": cdir.name}
                     for f in sorted(cdir.iterdir()) if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
        if len(rows) == n:
            raise dataset.DatasetError(f"evaluate.external: {d} holds no <class>/<image> files")
    return pd.DataFrame(rows, columns=["folder", "path", "actual"])


def _key(name: str) -> str:
    return "".join(c for c in str(name).casefold() if c.isalnum())


def match_classes(actual: pd.Series, names: list[str]) -> pd.Series:
    """Each folder name as a class of ``names`` (exactly, else ignoring case, spaces and
    punctuation: ``Garnet Red`` is ``garnet-red``), or NA when the model does not know it."""
    exact = set(names)
    loose = {}
    for n in names:
        loose.setdefault(_key(n), n)
    return actual.map(lambda a: a if a in exact else loose.get(_key(a))).astype("string")


def score_photos(model, photos: pd.DataFrame, params: Params, size: int, tta: bool,
                 batch: int = 16) -> tuple[np.ndarray, pd.DataFrame]:
    """Class probabilities of each photo as ``gemcurate predict`` computes them.

    Returns:
        (photos × classes probabilities, NaN rows for unreadable photos; the photos with
        ``error``, ``cropped``, ``crop_issue`` and ``sha256`` columns).
    """
    import hashlib

    k = int(model.output_shape[-1])
    probs = np.full((len(photos), k), np.nan)
    notes = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        x = np.stack([im for _, im in pending])
        if tta:
            x = np.concatenate([x, x[:, :, ::-1]])
        out = np.asarray(model.predict_on_batch(x), np.float64)
        if tta:
            out = (out[: len(pending)] + out[len(pending):]) / 2
        for (i, _), row in zip(pending, out, strict=True):
            probs[i] = row
        pending.clear()

    for i, path in enumerate(photos["path"]):
        try:
            data = Path(path).read_bytes()
            img, note = photo_input(data, params.crop, size)
            note = {**note, "sha256": hashlib.sha256(data).hexdigest(), "error": None}
            pending.append((i, img))
        except (ImageError, OSError) as exc:
            note = {"error": str(exc)[:200], "cropped": None, "crop_issue": None, "sha256": None}
        notes.append(note)
        if len(pending) >= batch:
            flush()
    flush()
    return probs, photos.reset_index(drop=True).assign(**pd.DataFrame(notes).to_dict("list"))


def topk_rows(probs: np.ndarray, names: list[str], k: int = 3) -> list[list]:
    order = np.argsort(-np.nan_to_num(probs, nan=-1), axis=1)[:, :k]
    return [[(names[j], float(probs[i, j])) for j in row] if np.isfinite(probs[i]).all() else []
            for i, row in enumerate(order)]


def _scores(probs: np.ndarray, y: np.ndarray, ks) -> dict:
    return {f"top{k}": round(top_k_accuracy(probs, y, k), 4) if len(y) else None for k in ks}


def _hits(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    """Top-``k`` accuracy where a label of -1 (a class the scorer does not have) is a miss."""
    top = np.argsort(-probs, axis=1)[:, :k]
    return float(np.mean([(yy >= 0) and (yy in row) for row, yy in zip(top, y, strict=True)]))


def raw_training_photos(raw: pd.DataFrame, ds: pd.DataFrame) -> pd.DataFrame:
    """The store's photos of the products the dataset trains on, as scraped: every active,
    readable image (hands, certificates and duplicates included), its store label, no crop.

    Products of the val and test splits are left out; the photos of an external test were
    never scraped, so nothing else can leak.
    """
    from pipeline.core.decisions import UNACCEPTABLE

    held = set(ds.loc[ds["split"].isin(["val", "test"]), "product_id"].dropna())
    ok = (raw["path"].notna() & (raw["status"].fillna("active") == "active")
          & ~raw["excluded_reason"].isin(UNACCEPTABLE) & ~raw["product_id"].isin(held))
    return raw.loc[ok, ["image_id", "path", "label", "product_id"]].drop_duplicates("image_id")


def baseline_probe(train: pd.DataFrame, photos: pd.DataFrame, *, data_dir: Path, store_root: Path,
                   l2: float, workers: int = 0) -> tuple[np.ndarray, list[str], dict]:
    """A logistic-regression probe on the frozen embedding of the raw training photos, and its
    probabilities for ``photos`` (whole photos, embedded like store images).

    Returns:
        (photos × probe classes, the probe's classes, notes).
    """
    from pipeline.core import embedding
    from pipeline.core.probe import Probe

    cache = embedding.EmbeddingCache.for_data_dir(data_dir)
    items = [(i, str(store_root / p)) for i, p in zip(train["image_id"], train["path"], strict=True)]
    embedding.ensure(cache, items, workers)
    vecs, found = cache.get(train["image_id"])
    x, labels = embedding.mean_part(vecs[found]), train["label"].astype(str).to_numpy()[found]
    probe = Probe.fit(x, labels, l2=l2)
    ext = np.zeros((len(photos), x.shape[1]), np.float32)
    ok = np.zeros(len(photos), bool)
    for i, path in enumerate(photos["path"]):
        try:
            ext[i] = embedding.mean_part(embedding.embed([embedding.embedding_input(
                Path(path).read_bytes())])[0])
            ok[i] = True
        except (ImageError, OSError):
            pass
    probs = np.full((len(photos), len(probe.classes)), np.nan)
    if ok.any():
        probs[ok] = probe.predict_proba(ext[ok])
    return probs, probe.classes, {"train_images": int(found.sum()), "classes": len(probe.classes),
                                  "l2": l2}


# long: the external test's steps in order (read photos, cut them as predict does, score, tables, the
# raw-photo baseline)
def external_test(model, info: dict, params: Params, out_dir: Path, plots_dir: Path | None,
                  raw: pd.DataFrame | None = None, ds: pd.DataFrame | None = None,
                  data_dir: Path | None = None, store_root: Path | None = None) -> dict:
    """Score ``evaluate.external`` and, with the raw manifest, the raw-photo baseline."""
    p = params.evaluate
    names = info["classes"]
    photos = external_photos(p.external)
    probs, scored = score_photos(model, photos, params, info["image_size"], p.tta == "flip")
    scored["class"] = match_classes(scored["actual"], names)
    known = scored["class"].notna().to_numpy() & np.isfinite(probs).all(1)
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[c] for c in scored.loc[known, "class"]], dtype=np.int64)
    pk = probs[known]
    pred = pk.argmax(1) if len(pk) else np.zeros(0, int)
    cm = confusion(y, pred, len(names))
    table = per_class(cm, names)
    top3 = topk_rows(probs, names)
    scored["predicted"] = [t[0][0] if t else None for t in top3]
    scored["probability"] = [round(t[0][1], 4) if t else None for t in top3]
    scored["top3"] = [json.dumps([[lab, round(pr, 4)] for lab, pr in t]) for t in top3]
    scored["correct"] = [bool(c == pr) if k else None for c, pr, k in
                         zip(scored["class"], scored["predicted"], known, strict=True)]
    unknown = scored.loc[scored["class"].isna(), "actual"].value_counts()
    m = {
        "folders": [str(f) for f in p.external], "images": len(scored),
        "scored": int(known.sum()), "unreadable": int(scored["error"].notna().sum()),
        "unknown_classes": {str(k): int(v) for k, v in unknown.items()},
        **_scores(pk, y, p.top_k),
        "macro": {c: (round(float(np.nanmean(table[c])), 4) if len(y) else None)
                  for c in ("precision", "recall", "f1")},
        "cropped": round(float(scored.loc[known, "cropped"].astype(bool).mean()), 4) if known.any() else None,
    }
    if unknown.any():
        logger.warning("evaluate: %d external photo(s) of %d class(es) the model does not know: %s",
                       int(unknown.sum()), len(unknown), ", ".join(unknown.index[:10]))
    if raw is not None and ds is not None and data_dir is not None and store_root is not None:
        train = raw_training_photos(raw, ds)
        bprobs, bclasses, note = baseline_probe(train, scored, data_dir=data_dir,
                                                store_root=store_root, l2=p.baseline_l2)
        bindex = {n: i for i, n in enumerate(bclasses)}
        # the same photos as the model's figure; a class the probe never saw counts as wrong
        by = np.array([bindex.get(c, -1) for c in scored.loc[known, "class"]], dtype=np.int64)
        bk = np.nan_to_num(bprobs[known], nan=0.0)
        base = {f"top{k}": (round(_hits(bk, by, k), 4) if len(by) else None) for k in p.top_k}
        m["baseline"] = {**base, **note, "what": "logistic regression on the frozen ImageNet "
                         "embedding of the raw training photos (no curation, no crop)"}
        if m.get("top1") is not None and base.get("top1") is not None:
            m["vs_baseline_top1"] = round(m["top1"] - base["top1"], 4)
        btop = topk_rows(bprobs, bclasses, 1)
        scored["baseline_predicted"] = [t[0][0] if t else None for t in btop]
    # files people and DVC read
    cols = ["path", "actual", "class", "predicted", "probability", "correct", "top3",
            *(["baseline_predicted"] if "baseline_predicted" in scored else []),
            "cropped", "crop_issue", "error"]
    write_text(out_dir / "external.csv", scored[cols].to_csv(index=False))
    write_text(out_dir / "external_per_class.csv", table.to_csv(index=False))
    pairs = pd.DataFrame({"actual": [names[i] for i in y], "predicted": [names[i] for i in pred]})
    if plots_dir is not None:
        write_text(Path(plots_dir) / "external_confusion.csv", pairs.to_csv(index=False))
    _confusion_png(cm, names, out_dir / "external_confusion.png")
    wrong = scored[known & ~scored["correct"].fillna(True).astype(bool).to_numpy()]
    _photo_sheet(wrong.head(p.contact_sheet), out_dir / "external_misclassified.png")
    return m


def _photo_sheet(wrong: pd.DataFrame, dest: Path) -> None:
    """External photos the model got wrong: the photo, its class, the model's top-3."""
    def picture(r):
        from PIL import Image

        with Image.open(r.path) as im:
            im.draft("RGB", (320, 320))
            return im.convert("RGB")

    _draw_sheet([(lambda r=r: picture(r), r.actual, json.loads(r.top3))
                 for r in wrong.itertuples(index=False)], dest)


def write_embeddings(path: Path, ids: list[str], man: pd.DataFrame, emb: np.ndarray) -> None:
    """``image_id, product_id, label, split, embedding`` (a fixed-size float32 list), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.core.atomic import atomic_path

    dim = emb.shape[1] if emb.ndim == 2 else 0
    table = pa.table({
        "image_id": pa.array(ids, pa.string()),
        "product_id": pa.array(man["product_id"].astype(str).tolist(), pa.string()),
        "label": pa.array(man["label"].astype(str).tolist(), pa.string()),
        "split": pa.array(man["split"].astype(str).tolist(), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.astype(np.float32).ravel()), dim),
    })
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The table of :func:`write_embeddings` and its embeddings as an N×D array."""
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    col = t.column("embedding").combine_chunks()
    emb = col.values.to_numpy().reshape(len(t), col.type.list_size)
    return t.drop(["embedding"]).to_pandas(), emb


def _ranked(table: pd.DataFrame, n: int, ascending: bool) -> list[dict]:
    t = table.dropna(subset=["precision"]).sort_values(["precision", "label"], ascending=[ascending, True])
    return [{"label": r.label, "precision": round(float(r.precision), 4)} for r in t.head(n).itertuples()]


def _confusion_png(cm: np.ndarray, names: list[str], dest: Path) -> None:
    plt = pyplot()
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(1, keepdims=True))
    side = max(5, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the actual class")
    fig.tight_layout()
    save_figure(fig, dest)


def _precision_png(table: pd.DataFrame, n: int, dest: Path) -> None:
    plt = pyplot()
    t = table.dropna(subset=["precision"]).sort_values("precision")
    parts = [("lowest", t.head(n)), ("highest", t.tail(n).iloc[::-1])]
    fig, axes = plt.subplots(1, 2, figsize=(11, max(3, 0.3 * n + 1)))
    for ax, (title, part) in zip(axes, parts, strict=True):
        ax.barh(part["label"], part["precision"], color="tab:red" if title == "lowest" else "tab:green")
        ax.set_xlim(0, 1)
        ax.set_title(f"{title} precision")
        ax.invert_yaxis()
    fig.tight_layout()
    save_figure(fig, dest)


def _contact_sheet(wrong: pd.DataFrame, df: pd.DataFrame, dataset_dir: Path, dest: Path) -> None:
    """Misclassified images, each with its actual class and the model's top-3."""
    import io

    from PIL import Image

    want = set(wrong["image_id"])
    images = {iid: data for iid, data, _ in dataset.records(dataset_dir, None, verify=False, ids=want)
              } if want else {}
    _draw_sheet([((lambda d=images.get(r.image_id): Image.open(io.BytesIO(d)).convert("RGB")
                   if d else None), r.actual, r.top3) for r in wrong.itertuples(index=False)], dest)


def _draw_sheet(cells: list, dest: Path, cell: int = 160, cols: int = 6) -> None:
    """A contact sheet: per cell a picture (a callable giving a PIL image, or None), the true
    class and the top-3 ``(label, probability)``, the first in red."""
    from PIL import Image, ImageDraw

    from pipeline.core.atomic import atomic_path

    rows = max(1, -(-len(cells) // cols))
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 52)), "white")
    d = ImageDraw.Draw(sheet)
    f = font(10)
    for k, (picture, actual, top3) in enumerate(cells):
        x, y = (k % cols) * cell, (k // cols) * (cell + 52)
        try:
            im = picture()
        except OSError:
            im = None
        if im is not None:
            im.thumbnail((cell - 8, cell - 8))
            sheet.paste(im, (x + 4, y + 4))
        d.text((x + 4, y + cell), f"true: {actual}"[:28], fill=(0, 0, 0), font=f)
        for j, (lab, pr) in enumerate(top3):
            d.text((x + 4, y + cell + 12 * (j + 1)), f"{pr:.2f} {lab}"[:28],
                   fill=(170, 0, 0) if j == 0 else (60, 60, 60), font=f)
    with atomic_path(dest) as tmp:
        sheet.save(tmp, "PNG")


def _external_card(ext: dict | None) -> list[str]:
    if not ext:
        return []
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["", "## Photos from outside the pipeline", "",
             f"{ext['scored']:,} of {ext['images']:,} labelled photos in "
             f"{', '.join(ext['folders'])}, scored as `gemcurate predict` scores a photo "
             f"({100 * (ext.get('cropped') or 0):.0f}% cropped, the rest whole):", "",
             "| | top-1 | top-3 | top-5 |", "|---|---|---|---|",
             f"| this model | {fmt(ext.get('top1'))} | {fmt(ext.get('top3'))} | {fmt(ext.get('top5'))} |"]
    b = ext.get("baseline")
    if b:
        lines.append(f"| raw-photo probe ({b['train_images']:,} uncurated photos) | {fmt(b.get('top1'))} | "
                     f"{fmt(b.get('top3'))} | {fmt(b.get('top5'))} |")
        if ext.get("vs_baseline_top1") is not None:
            d = ext["vs_baseline_top1"]
            lines += ["", f"The curated dataset's model is **{abs(d) * 100:.1f} points "
                          f"{'above' if d >= 0 else 'below'}** the raw photos' probe (top-1)."]
    if ext.get("unknown_classes"):
        lines += ["", "Classes the model does not know (not scored): " + ", ".join(
            f"{k} ({v})" for k, v in ext["unknown_classes"].items())]
    return lines


def _retrieval_card(r: dict | None) -> list[str]:
    if not r or not r.get("model") or r["model"].get("p@5") is None:
        return []
    m, s = r["model"], r.get("shared") or {}
    shared = (f"; the shared curation embedding {s['p@1']:.3f} / {s['p@5']:.3f} / {s['p@10']:.3f}"
              if s.get("p@5") is not None else "")
    return [f"- nearest-product search ({m['queries']} queries against train, own product "
            f"excluded): precision@1/5/10 with this model's embedding {m['p@1']:.3f} / "
            f"{m['p@5']:.3f} / {m['p@10']:.3f}{shared}"]


def model_card(metrics: dict, info: dict, params: Params, dataset_card: Path) -> str:
    """The model card: what was trained on what, how, and how well."""
    version = ""
    if dataset_card.exists():
        first = dataset_card.read_text().splitlines()[:1]
        version = first[0].lstrip("# ") if first else ""
    tp = params.train
    tops = " / ".join(f"top-{k} **{metrics.get(f'top{k}', float('nan')):.3f}**"
                      for k in params.evaluate.top_k)
    confused = [f"- {x}" for x in metrics["most_confused"]] or ["- none"]
    lines = [
        f"# Model card: {info['model']} on {version or 'the exported dataset'}", "",
        f"- {metrics['classes']} classes; evaluated on the {metrics['split']} split "
        f"({metrics['images']:,} images): {tops}",
        f"- macro precision {metrics['macro']['precision']:.3f}, recall {metrics['macro']['recall']:.3f}, "
        f"F1 {metrics['macro']['f1']:.3f}",
        f"- embedding cosine similarity: within a class {metrics['cosine']['within_class']}, between "
        f"classes {metrics['cosine']['between_class']}",
        f"- weights: {info['weights']}; input {info['image_size']} px RGB 0–255 (preprocessing inside)",
        f"- schedule: {tp.head_epochs} epochs at {tp.head_lr:g} (backbone frozen), "
        f"{tp.finetune_epochs} at {tp.finetune_lr:g} ({tp.unfreeze} unfrozen), early stopping "
        f"(patience {tp.patience}), class weights {'on' if tp.class_weights else 'off'}, seed {tp.seed}",
        *_retrieval_card(metrics.get("retrieval")),
        *_external_card(metrics.get("external")),
        "", "## Most often confused", "", *confused,
        "", "## Highest and lowest precision", "",
        "| highest | precision | lowest | precision |", "|---|---|---|---|",
    ]
    hi, lo = metrics["highest_precision"], metrics["lowest_precision"]
    for a, b in zip(hi, lo, strict=False):
        lines.append(f"| {a['label']} | {a['precision']:.3f} | {b['label']} | {b['precision']:.3f} |")
    lines += ["", "Figures: `data/evaluate/confusion.png`, `precision.png`, `misclassified.png`; "
              "tables: `per_class.csv`, `misclassified.csv`.", ""]
    return "\n".join(lines)


@stage("evaluate")
def main(ctx: StageRun, _: None) -> StageResult:
    """Read ``models/`` and ``data/dataset``; write ``data/evaluate/``, the card and metrics."""
    params, io = ctx.params, ctx.io
    ds_dir = io.data_dir / "dataset"
    raw = None
    if params.evaluate.external and params.evaluate.baseline:
        raw = io.read("raw")
        io.images(raw)  # the baseline reads store blobs: checked like every stage's
    _, metrics = run(dataset.read_manifest(ds_dir), params, dataset_dir=ds_dir,
                     model_dir=MODEL_DIR, out_dir=io.data_dir / "evaluate",
                     plots_dir=io.data_dir / "plots", raw=raw, data_dir=io.data_dir,
                     store_root=io.store_root)
    info = json.loads((MODEL_DIR / "labels.json").read_text())
    write_text(MODEL_DIR / "MODEL_CARD.md", model_card(metrics, info, params, ds_dir / "README.md"))
    return StageResult(
        metrics, returned={k: v for k, v in metrics.items()
                           if k not in ("highest_precision", "lowest_precision")},
        summary=f"evaluate: top-1 {metrics.get('top1', 0):.3f} top-3 {metrics.get('top3', 0):.3f} "
                f"top-5 {metrics.get('top5', 0):.3f} on {metrics['images']} {metrics['split']} images")
