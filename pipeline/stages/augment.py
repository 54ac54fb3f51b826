"""Augment stage: balance the train split with rotations and mirrors, with lineage.

Train only, after the split, so a variant can never sit in another split than
its photo (the published gemstone project augmented first, then split, and
leaked rotated copies into validation). Each class is brought to
``augment.target_per_class``:

* below the target, every photo gets variants from the set {0°, 45°, …, 315°} ×
  {plain, mirrored} (16 with the defaults; colour is never touched unless an
  extra transform asks, because colour identifies gems), handed out round-robin
  over the class's photos in a seeded order, so every photo gets ⌊t/n⌋ or
  ⌈t/n⌉ images and the class lands exactly on the target (or on 16 × n when even
  that is short, reported in the metrics);
* above the target, a seeded sample of photos stays and the others get
  ``excluded_reason = over_target`` (when ``cap_above_target``).

A rotation never cuts the stone off and never leaves black corners: the padded
crop is put on a larger canvas filled with its background colour, rotated
about its centre with the same fill, and re-cut around the *rotated* object
box with the crop's margin, then resized to the target size.

Parameters are drawn first (seeded per parent and variant) and written to the
``transform`` column as JSON; applying them is a pure function, so a variant can
be rebuilt from its row. Variant ids are sha256(parent_id + transform).

Example:
    $ gemcurate augment --data-dir data
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.core.atomic import write_bytes, write_text
from pipeline.core.config import AugmentParams, ExtraTransforms, Params
from pipeline.core.groups import unit_hash
from pipeline.core.imageio import ImageError, encode_image
from pipeline.core.parallel import map_items
from pipeline.core.plots import pyplot, save_figure
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)


def draw_extra(extra: ExtraTransforms, rng: np.random.Generator) -> dict:
    """Random values of the enabled extra transforms (empty when all are off)."""
    out: dict = {}
    if extra.shift > 0:
        out["shift"] = [round(float(v), 4) for v in rng.uniform(-extra.shift, extra.shift, 2)]
    if extra.zoom > 0:
        out["zoom"] = round(float(rng.uniform(1 - extra.zoom, 1 + extra.zoom)), 4)
    if extra.shear > 0:
        out["shear"] = round(float(rng.uniform(-extra.shear, extra.shear)), 3)
    if extra.brightness > 0:
        out["brightness"] = round(float(rng.uniform(1 - extra.brightness, 1 + extra.brightness)), 4)
    if extra.channel_shift > 0:
        out["channel_shift"] = [round(float(v), 2)
                                for v in rng.uniform(-extra.channel_shift, extra.channel_shift, 3)]
    return out


def variant_id(parent_id: str, transform: dict) -> str:
    return hashlib.sha256((parent_id + json.dumps(transform, sort_keys=True)).encode()).hexdigest()


def apply_transform(img: np.ndarray, t: dict, fill: tuple[int, int, int],
                    object_box: list[float] | None = None, margin: float = 0.08) -> np.ndarray:
    """Apply a drawn transform to a square RGB crop (pure).

    Args:
        img: Square RGB crop (the object centred, padded with ``fill``).
        t: ``{"rotate": deg, "mirror": bool, ...extras}`` as drawn.
        fill: Background colour for every uncovered pixel.
        object_box: The object's box inside ``img`` ([x0, y0, x1, y1]); default:
            the crop without its margin.
        margin: Margin to keep around the rotated object (share of its side).

    Returns:
        An RGB image of the same size.
    """
    size = img.shape[0]
    fill_f = tuple(float(c) for c in fill)
    if object_box is None:
        m = size * margin / (1 + 2 * margin)
        object_box = [m, m, size - m, size - m]
    out = img[:, ::-1] if t.get("mirror") else img
    if t.get("mirror"):
        object_box = [size - object_box[2], object_box[1], size - object_box[0], object_box[3]]
    angle = float(t.get("rotate", 0)) % 360
    zoom = float(t.get("zoom", 1.0))
    shear = math.radians(float(t.get("shear", 0.0)))
    shift = t.get("shift", [0.0, 0.0])
    if angle or zoom != 1.0 or shear or any(shift):
        # the rotated (sheared) object box decides the output window: the whole object
        # plus the margin, never less than the original square
        c = size / 2.0
        rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        lin = rot[:, :2] @ np.array([[1.0, math.tan(shear)], [0.0, 1.0]])
        corners = np.array([[object_box[0], object_box[1]], [object_box[2], object_box[1]],
                            [object_box[0], object_box[3]], [object_box[2], object_box[3]]]) - c
        moved = corners @ lin.T
        ext = np.abs(moved).max(0)
        half = max(size / 2.0, float(ext.max()) * (1 + 2 * margin) / (1 + 1e-9))
        # output pixel u maps to input: scale the window of side 2*half onto size px
        scale = size / (2 * half) * zoom
        a = lin * scale
        offset = np.array([c, c]) + np.array(shift, float) * size - a @ np.array([c, c])
        mat = np.hstack([a, offset[:, None]])
        out = cv2.warpAffine(np.ascontiguousarray(out), mat, (size, size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=fill_f)
    if "brightness" in t or "channel_shift" in t:
        f = out.astype(np.float32) * float(t.get("brightness", 1.0))
        f += np.array(t.get("channel_shift", [0.0, 0.0, 0.0]), np.float32)
        out = np.clip(f, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def _object_in_crop(row: dict, size: int) -> list[float] | None:
    ob, cb = row.get("object_box"), row.get("crop_box")
    if ob is None or cb is None or len(ob) != 4 or len(cb) != 4:
        return None
    f = size / max(1.0, float(cb[2] - cb[0]))
    return [(ob[0] - cb[0]) * f, (ob[1] - cb[1]) * f, (ob[2] - cb[0]) * f, (ob[3] - cb[1]) * f]


def _make_variant(args: tuple) -> dict:
    """Write one variant (worker entry point)."""
    vid, src, dest, t, fill, obox, margin, fmt = args
    img = cv2.imread(src, cv2.IMREAD_COLOR)
    if img is None:
        return {"image_id": vid, "_error": f"cannot read {src}"}
    rgb = img[..., ::-1]
    out = apply_transform(rgb, t, fill, obox, margin)
    try:
        data = encode_image(np.ascontiguousarray(out), fmt)
    except (ImageError, ValueError) as exc:
        return {"image_id": vid, "_error": f"cannot encode: {exc}"}
    # always rewritten: the id names parent + transform, not the parent's crop, which a
    # change of crop params redraws under the same parent id
    write_bytes(dest, data)
    return {"image_id": vid}


def plan(df: pd.DataFrame, p: AugmentParams) -> tuple[pd.DataFrame, pd.Series, dict]:
    """Decide every variant (pure): the variant rows to make and the originals capped out.

    Returns:
        Variant rows (image_id, parent_id, transform, label, ...), a boolean
        Series of capped originals, and per-class counts.
    """
    variants = p.variant_plan()
    train = df[(df["split"] == "train") & df["excluded_reason"].isna()]
    capped = pd.Series(False, index=df.index)
    rows: list[dict] = []
    per_class: dict[str, dict] = {}
    target = p.target_per_class
    for label, part in train.groupby("label", sort=True):
        ids = sorted(part["image_id"], key=lambda i: unit_hash(p.seed, f"{label}/{i}"))
        n = len(ids)
        if n >= target:
            if p.cap_above_target and n > target:
                drop = set(ids[target:])
                capped |= df["image_id"].isin(drop) & (df["split"] == "train")
            per_class[str(label)] = {"originals": n, "kept": min(n, target) if p.cap_above_target else n,
                                     "variants": 0}
            continue
        budget = min(target, n * p.images_per_photo()) - n  # identity = the original itself
        by_id = part.drop_duplicates("image_id").set_index("image_id")
        # each photo gets its variants in its own seeded order (identity excluded)
        orders = {}
        for i in ids:
            rng = np.random.default_rng([p.seed, int(i[:12], 16)])
            orders[i] = [variants[k] for k in 1 + rng.permutation(len(variants) - 1)]
        made = 0
        for rnd in range(len(variants) - 1):
            for i in ids:
                if made >= budget:
                    break
                t = dict(orders[i][rnd])
                if p.extra.enabled():
                    rng = np.random.default_rng([p.seed, int(i[:12], 16), rnd + 1])
                    t.update(draw_extra(p.extra, rng))
                src = by_id.loc[i]
                rows.append({"image_id": variant_id(i, t), "parent_id": i, "transform": t,
                             "label": label, "src_path": src["image_path"],
                             "background_rgb": src.get("background_rgb"),
                             "object_box": src.get("object_box"), "crop_box": src.get("crop_box")})
                made += 1
            if made >= budget:
                break
        per_class[str(label)] = {"originals": n, "kept": n, "variants": made,
                                 "short_of_target": max(0, target - n - made)}
    return pd.DataFrame(rows), capped, per_class


# long: the stage's steps in order (plan per class, sample, write variants in the pool, rows); the
# plan is AugmentParams.variant_plan
def run(df: pd.DataFrame, params: Params, *, data_dir: str | Path, progress: bool = False
        ) -> tuple[pd.DataFrame, dict]:
    """Make the variants and return the augment manifest (split rows + variant rows).

    Args:
        df: The split manifest.
        params: All params (reads ``params.augment``, and the crop's margin and size).
        data_dir: Where the crops are and the variants go (``augment/``).
        progress: Show a progress bar.

    Returns:
        The augment manifest and a metrics dict.

    Example:
        >>> out, metrics = run(split_manifest, params, data_dir="data")
    """
    t0 = time.perf_counter()
    p, margin, size = params.augment, params.crop.margin, params.crop.target_size
    data_dir = Path(data_dir)
    var, capped, per_class = plan(df, p)
    out = df.copy()
    out["parent_id"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["transform"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out.loc[capped, "excluded_reason"] = "over_target"
    out.loc[capped, "excluded_detail"] = f"class above augment.target_per_class={p.target_per_class}"
    out.loc[capped, "split"] = pd.NA
    out.loc[capped, "image_path"] = pd.NA
    work = []
    for r in var.to_dict("records"):
        rel = f"augment/{r['image_id'][:2]}/{r['image_id']}.{p.format}"
        r["image_path"] = rel
        fill = tuple(int(c) for c in r["background_rgb"]) if r["background_rgb"] is not None \
            else (255, 255, 255)
        work.append((r["image_id"], str(data_dir / r["src_path"]), str(data_dir / rel), r["transform"],
                     fill, _object_in_crop(r, size), margin, p.format))
    results = map_items(_make_variant, work, p.workers, "augment", progress)
    errors = [r for r in results if "_error" in r]
    if errors:
        raise RuntimeError(f"augment: {len(errors)} variant(s) failed, first: {errors[0]['_error']}")
    if len(var):
        # the parent is the dataset row: another row may share its image_id (the same
        # bytes at a URL that is gone, or an excluded exact duplicate)
        in_train = (out["split"] == "train").fillna(False) & out["excluded_reason"].isna()
        parents = out[in_train].drop_duplicates("image_id").set_index("image_id")
        keep_cols = [c for c in out.columns if c not in ("image_id", "transform", "parent_id",
                                                          "image_path", "split")]
        vrows = parents.loc[var["parent_id"], keep_cols].reset_index(drop=True)
        vrows["image_id"] = var["image_id"].values
        vrows["parent_id"] = var["parent_id"].values
        vrows["transform"] = [json.dumps(t, sort_keys=True) for t in var["transform"]]
        vrows["image_path"] = [w[2][len(str(data_dir)) + 1:] for w in work]
        vrows["split"] = "train"
        # a variant is not a near duplicate of anything but its parent: the dedupe columns
        # describe the parent's photo, kept for lineage (dup_cluster keeps it in its group)
        out = pd.concat([out, vrows[out.columns]], ignore_index=True)
    live = out[out["split"].notna()]
    counts = pd.crosstab(live["label"], live["split"])
    metrics = {
        "target_per_class": p.target_per_class, "variants": len(var),
        "capped": int(capped.sum()),
        "train_per_class": {str(k): int(v) for k, v in counts.get("train", pd.Series()).items()},
        "short_of_target": {k: v["short_of_target"] for k, v in per_class.items()
                            if v.get("short_of_target")},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if metrics["short_of_target"]:
        logger.warning("augment: classes short of the target even with every variant: %s",
                       metrics["short_of_target"])
    return out, metrics


@stage("augment", reads="split")
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Read ``split.parquet``, augment, write ``augment.parquet`` and ``metrics/augment.json``."""
    data_dir = ctx.io.data_dir
    # a DVC output even when there is nothing to add (augmentation off, classes at target)
    (data_dir / "augment").mkdir(parents=True, exist_ok=True)
    out, metrics = run(df, ctx.params, data_dir=data_dir, progress=ctx.progress)
    return StageResult(metrics, out, then=(lambda written: _class_plot(written, data_dir),),
                       summary=f"augment: {metrics['variants']} variants, train per class "
                               f"{metrics['train_per_class']}")


def _class_plot(df: pd.DataFrame, data_dir: Path) -> None:
    """Class distribution before and after balancing (CSV for ``dvc plots``, PNG for people)."""
    plt = pyplot()
    train = df[df["split"] == "train"]
    before = train[train["parent_id"].isna()]["label"].value_counts().sort_index()
    after = train["label"].value_counts().reindex(before.index, fill_value=0)
    table = pd.DataFrame({"label": before.index, "before": before.values, "after": after.values})
    plots = data_dir / "plots"
    write_text(plots / "class_balance.csv", table.to_csv(index=False))
    long = pd.concat([table.assign(stage="before", images=table["before"]),
                      table.assign(stage="after", images=table["after"])])[["label", "stage", "images"]]
    write_text(plots / "class_balance_long.csv", long.to_csv(index=False))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(table)), 4))
    x = np.arange(len(table))
    ax.bar(x - 0.2, table["before"], 0.4, label="before (photos)")
    ax.bar(x + 0.2, table["after"], 0.4, label="after balancing")
    ax.set_xticks(x, table["label"], rotation=60, ha="right")
    ax.set_ylabel("train images")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, plots / "class_balance.png")
