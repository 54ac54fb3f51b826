"""Label issues: the store labels that the shared embedding doubts, for a person to look at.

Stores mislabel (a tanzanite listed as a sapphire, an earring in the rings category), and
the store's category is the label gemcurate trains on. This stage questions it the way
Cleanlab's confident learning does:

1. **Out-of-fold probabilities.** A linear probe (:class:`pipeline.core.probe.Probe`) on the
   embeddings dedupe already computed, beside each photo's foreground colour histogram
   (:mod:`pipeline.core.colour`, weighted by ``labels.colour_weight``: gems are told apart by
   colour, which the embedding keeps poorly), fitted k times; each image is scored by the probe
   that never saw it, nor any image of its product or duplicate cluster (the folds are
   groups: products joined by shared duplicate clusters, as the split's groups are).
2. **Confident learning.** ``cleanlab.filter.find_label_issues`` on those probabilities
   (per-class thresholds from the confident joint; ``labels.filter_by`` picks the rule).
3. **Into the review queue.** A flagged image gets ``needs_review`` with reason
   ``label_issue``, the probe's suggested class and its probability, and its label quality
   (the probability of its own label: the queue shows the lowest, the surest mistakes,
   first). ``labels.hold_out: true`` also keeps it out of the dataset until an annotator
   decides; by default it is only flagged.

An image with an annotator's decision in force (accepted, relabelled) is never flagged again:
its label is a person's, and its image id is its content, so the same photo keeps the
decision. Such images still teach the probe, as trusted labels.

Example:
    >>> out, metrics = run(filter_manifest, params, embeddings=EmbeddingCache.for_data_dir("data"))
    >>> out[out["label_issue"]][["label", "label_suggestion", "label_quality"]]
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.colour import colour_vectors
from pipeline.core.config import Params
from pipeline.core.embedding import EmbeddingCache
from pipeline.core.flags import add_review, ensure_review_columns
from pipeline.core.groups import UnionFind, unit_hash
from pipeline.core.probe import Probe, unit_rows
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)

REASON = "label_issue"
COLUMNS = ("label_issue", "label_quality", "label_suggestion", "label_suggestion_p", "label_top")


def fold_groups(df: pd.DataFrame) -> pd.Series:
    """Each row's leak-free group: products joined by shared duplicate clusters."""
    uf = UnionFind()
    clusters = df["dup_cluster"] if "dup_cluster" in df else pd.Series(pd.NA, index=df.index)
    for pid, cl in zip(df["product_id"].astype(str), clusters, strict=True):
        uf.find(("p", pid))
        if cl is not None and not pd.isna(cl):
            uf.union(("p", pid), ("c", str(cl)))
    return pd.Series([str(uf.find(("p", p))) for p in df["product_id"].astype(str)], index=df.index)


def out_of_fold(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: list[str],
                folds: int = 5, l2: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Probabilities (rows × ``classes``) from probes that never saw a row's group.

    Groups go to folds by a seeded hash, so a refresh keeps a known group in its fold. A
    class a fold's training part lacks gets probability 0 there.
    """
    fold = np.array([int(unit_hash(seed, str(g)) * folds) % folds for g in groups])
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)))
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        train = ~test
        if len(set(labels[train])) < 2:  # nothing to tell apart: the prior of the rest
            out[test] = np.bincount([index[v] for v in labels[train]], minlength=len(classes))
            out[test] /= max(out[test].sum(axis=1, keepdims=True).max(), 1)
            continue
        probe = Probe.fit(vectors[train], labels[train], l2=l2)
        cols = [index[c] for c in probe.classes]
        out[np.ix_(test, cols)] = probe.predict_proba(vectors[test])
    sums = out.sum(axis=1, keepdims=True)
    return np.where(sums > 0, out / np.where(sums > 0, sums, 1), 1.0 / len(classes))


def features(vectors: np.ndarray, paths: pd.Series, store_root: str | Path | None,
             colour_weight: float) -> tuple[np.ndarray, int]:
    """The probe's input: each unit embedding beside its photo's unit colour histogram times
    ``colour_weight`` (the embedding alone when the weight is 0 or no store is given); and
    how many photos' colours could not be read (their histogram is zero)."""
    if not colour_weight or store_root is None:
        return vectors, 0
    colours, ok = colour_vectors([Path(store_root) / str(p) for p in paths])
    return np.hstack([unit_rows(vectors), colour_weight * unit_rows(colours)]), int((~ok).sum())


def find_issues(probs: np.ndarray, given: np.ndarray, filter_by: str) -> np.ndarray:
    """Boolean mask of the rows cleanlab's confident learning calls mislabelled."""
    from cleanlab.filter import find_label_issues

    if probs.shape[1] < 2 or len(given) < 2 * probs.shape[1]:
        return np.zeros(len(given), bool)
    return np.asarray(find_label_issues(labels=given, pred_probs=probs, filter_by=filter_by,
                                        multi_label=False), bool)


def _empty(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["label_issue"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    for c in ("label_quality", "label_suggestion_p"):
        out[c] = pd.Series(np.nan, index=out.index, dtype="float64")
    for c in ("label_suggestion", "label_top"):
        out[c] = pd.Series(pd.NA, index=out.index, dtype="string")
    return out


# long: the stage's steps in order (who is judged, out-of-fold probabilities, confident learning,
# columns, review flags, hold-out, metrics)
def run(df: pd.DataFrame, params: Params, *, embeddings: EmbeddingCache | None,
        store_root: str | Path | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Score every live image's label out of fold; flag the ones confident learning doubts.

    ``store_root`` holds the photos (``df['path']``) whose colours join the embedding; without
    it the probe sees the embedding alone.

    Returns:
        The manifest with :data:`COLUMNS` (null for rows not judged: excluded, no
        embedding, a class with fewer than ``labels.min_class_images``) and the metrics.
    """
    t0 = time.perf_counter()
    p = params.labels
    out = _empty(df)
    ensure_review_columns(out)
    metrics = {"enabled": p.enabled, "images": len(df), "judged": 0, "label_issues": 0,
               "held_out": 0, "decided_not_flagged": 0, "filter_by": p.filter_by, "folds": p.folds}
    if not p.enabled or embeddings is None or not len(df):
        metrics["seconds"] = round(time.perf_counter() - t0, 3)
        return out, metrics
    live = out["excluded_reason"].isna() & out["path"].notna()
    # in image-id order: the same photos give the same fits whatever order the store listed them
    rows = out[live].drop_duplicates("image_id").sort_values("image_id", kind="stable")
    vecs, found = embeddings.get(rows["image_id"])
    rows, vecs = rows[found], vecs[found]
    counts = rows["label"].astype(str).value_counts()
    judged = rows["label"].astype(str).map(counts) >= p.min_class_images
    rows, vecs = rows[judged.to_numpy()], vecs[judged.to_numpy()]
    metrics.update(no_embedding=int((~found).sum()),
                   small_classes=sorted(counts[counts < p.min_class_images].index.tolist()))
    classes = sorted(rows["label"].astype(str).unique())
    if len(classes) < 2:
        metrics["seconds"] = round(time.perf_counter() - t0, 3)
        return out, metrics
    given = rows["label"].astype(str).to_numpy()
    vecs, metrics["colour_unread"] = features(vecs, rows["path"], store_root, p.colour_weight)
    probs = out_of_fold(vecs, given, fold_groups(rows).to_numpy(), classes, p.folds, p.l2, p.seed)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in given])
    issue = find_issues(probs, y, p.filter_by) & (probs[np.arange(len(y)), y] <= p.max_quality)
    decided = rows["decision"].notna().to_numpy() if "decision" in rows else np.zeros(len(rows), bool)
    metrics["decided_not_flagged"] = int((issue & decided).sum())
    issue &= ~decided
    best = probs.argmax(axis=1)
    top = np.argsort(-probs, axis=1)[:, :3]
    per_id = pd.DataFrame({
        "label_issue": issue,
        "label_quality": probs[np.arange(len(y)), y],
        "label_suggestion": [classes[i] for i in best],
        "label_suggestion_p": probs[np.arange(len(y)), best],
        "label_top": [json.dumps([[classes[j], round(float(probs[r, j]), 4)] for j in top[r]])
                      for r in range(len(y))],
    }, index=rows["image_id"].to_numpy())
    ids = out["image_id"]
    hit = ids.isin(per_id.index) & live
    for c in COLUMNS:
        out.loc[hit, c] = ids[hit].map(per_id[c]).to_numpy()
    out["label_issue"] = out["label_issue"].astype("boolean")
    flagged = out["label_issue"].fillna(False).astype(bool) & live
    add_review(out, flagged, REASON)
    if p.hold_out:
        out.loc[flagged, "excluded_reason"] = REASON
        out.loc[flagged, "excluded_detail"] = [
            f"label {lab!r} doubted: {sug} {pp:.2f} (held out until reviewed)"
            for lab, sug, pp in zip(out.loc[flagged, "label"], out.loc[flagged, "label_suggestion"],
                                    out.loc[flagged, "label_suggestion_p"], strict=True)]
    per_class = out[flagged]["label"].value_counts()
    metrics.update(
        judged=len(rows), classes=len(classes), label_issues=int(flagged.sum()),
        share=round(float(flagged.sum()) / max(len(rows), 1), 4),
        held_out=int(flagged.sum()) if p.hold_out else 0,
        # how often the out-of-fold probe agrees with the store: a floor on label noise
        probe_agreement=round(float((best == y).mean()), 4),
        per_class={str(k): int(v) for k, v in per_class.items()},
        seconds=round(time.perf_counter() - t0, 3))
    return out, metrics


@stage("labels", reads="filter")
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Read ``filter.parquet``; flag label issues; write ``labels.parquet`` and its metrics."""
    emb = EmbeddingCache.for_data_dir(ctx.io.data_dir) if ctx.params.labels.enabled else None
    p = ctx.params.labels
    store = ctx.io.images(df) if p.enabled and p.colour_weight else None
    out, metrics = run(df, ctx.params, embeddings=emb, store_root=store, progress=ctx.progress)
    return StageResult(metrics, out,
                       summary=f"labels: {metrics['label_issues']} label issues among "
                               f"{metrics['judged']} images judged"
                               f"{' (held out until reviewed)' if ctx.params.labels.hold_out else ''}")
