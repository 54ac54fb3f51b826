"""Crop stage: the crop algorithm (``pipeline/core/cropbox.py``) over every image of the store.

Each image still in the dataset is cut to a square around its object at the crop's target
size (``data/crops/<id[:2]>/<id>.<format>``); no object, an object cut by the border or
several objects set ``needs_review`` with ``crop_<issue>`` and no blind crop is published
for them. The boxes are cached per image (params + code), so a refresh crops only what is
new. How a box is found: the module doc of :mod:`pipeline.core.cropbox`.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import write_bytes
from pipeline.core.blobstore import BlobProblem, raise_if_damaged, read_verified
from pipeline.core.config import CropParams, Params
from pipeline.core.cropbox import (  # noqa: F401 - the algorithm, re-exported for its users
    BORDER_POINTS,
    CUT_CONTACT,
    FILL_RESIDUAL,
    SHADOW_NOISE,
    TEXTURE_EDGES,
    TEXTURE_FACTOR,
    CropResult,
    analysis_image,
    background_coarse,
    border_contact,
    cut,
    cut_from,
    find_box,
    reflection_split,
    scale_box,
    whole_square,
)
from pipeline.core.flags import add_review
from pipeline.core.imageio import ImageError, encode_image, load_rgb
from pipeline.core.parallel import map_items
from pipeline.core.resultcache import ResultCache, combine, compute_shard, reuse
from pipeline.core.stageio import StageIO
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)

# the code that computes a box and a crop: a change to any of it crops every image again
CODE = [Path(__file__), Path(__file__).parents[1] / "core" / "cropbox.py",
        Path(__file__).parents[1] / "core" / "imageio.py"]


def crop_file(args: tuple[str, str, str, CropParams]) -> dict:
    """Find the box in one stored image and write its crop (worker entry point)."""
    image_id, path, out_dir, p = args
    if not re.fullmatch(r"[0-9a-f]{64}", image_id):  # the crop's name comes from it
        raise ValueError(f"not an image id: {image_id[:80]!r}")
    try:
        data = read_verified(path, image_id)  # the bytes that enter the dataset are the id's
        # one decode, at the smallest free JPEG scale that serves both the analysis and
        # the cut of an object filling half the frame (800 px: the full image, which
        # costs less than a 1/2 decode plus a second full one for the 43 % of photos
        # whose box is under 448 px); the box is found in a resized copy
        loaded = load_rgb(data, max_side=max(p.analysis_side, 2 * p.target_size), exact=False)
        small = analysis_image(loaded.array, p.analysis_side)
        res = find_box(small, p)
        f = small.shape[1] / loaded.orig_size[0]
        row = {"image_id": image_id, "object_box": scale_box(res.object_box, f),
               "crop_box": scale_box(res.box, f), "crop_confidence": res.confidence,
               "crop_issue": res.issue, "background_rgb": list(res.background), "crop_path": None}
        usable = ("none", "low_contrast", *(("cut_by_border",) if p.cut_by_border == "keep" else ()))
        if p.mode == "full":  # the whole photo on a square: its scale and context are the signal
            row["crop_box"] = whole_square(*loaded.orig_size)
        if p.mode == "full" or (res.box is not None and res.issue in usable):
            img = cut_from(loaded, data, row["crop_box"], p.target_size, res.background)
            rel = f"{image_id[:2]}/{image_id}.{p.format}"
            write_bytes(Path(out_dir) / rel, encode_image(img, p.format))
            row["crop_path"] = rel
        return row
    except BlobProblem as exc:
        return {"image_id": image_id, "_damaged": str(exc)}
    except (ImageError, OSError) as exc:
        return {"image_id": image_id, "crop_issue": "undecodable", "crop_confidence": 0.0,
                "_error": str(exc)[:200]}


def run(df: pd.DataFrame, params: Params, *, store_root: str | Path, crops_dir: str | Path,
        cache: ResultCache | None = None, progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Crop every image still in the dataset; flag doubtful crops for review.

    Args:
        df: The filter manifest.
        params: All params (reads ``params.crop``).
        store_root: Root of the content-addressed image store.
        crops_dir: Where the crop files go (``<image_id[:2]>/<image_id>.<format>``).
        cache: Boxes of earlier runs (same params and code); an image it holds whose
            crop file still exists is not cropped again.
        progress: Show a progress bar.

    Returns:
        The crop manifest and a metrics dict.

    Example:
        >>> out, metrics = run(filter_manifest, params, store_root="data/store",
        ...                    crops_dir="data/crops")
    """
    t0 = time.perf_counter()
    p = params.crop
    live = df[df["excluded_reason"].isna() & df["path"].notna()].drop_duplicates("image_id")
    old, _ = reuse(cache, live["image_id"])
    if old is not None:
        has_file = [pd.isna(c) or (Path(crops_dir) / str(c)).exists() for c in old["crop_path"]]
        old = old[np.array(has_file, bool)]
    known = set(old["image_id"]) if old is not None else set()
    args = [(i, str(Path(store_root) / pth), str(crops_dir), p)
            for i, pth in zip(live["image_id"], live["path"], strict=True) if i not in known]
    rows = map_items(crop_file, args, p.workers, "crop", progress)
    raise_if_damaged(rows, store_root)
    t_crop = time.perf_counter() - t0
    res = combine(cache, old, pd.DataFrame(rows))
    out = df.copy()
    cols = ["object_box", "crop_box", "crop_confidence", "crop_issue", "crop_path", "background_rgb"]
    by_id = res.set_index("image_id") if len(res) else pd.DataFrame(columns=cols)
    for c in cols:
        out[c] = out["image_id"].map(by_id[c]) if c in by_id.columns else None
    out["crop_confidence"] = out["crop_confidence"].astype("Float64")
    live_rows = out["excluded_reason"].isna() & out["path"].notna()
    doubtful = live_rows & (out["crop_path"].isna() | (out["crop_confidence"] < p.min_confidence)
                            .fillna(True))
    if p.mode == "full":  # nothing is cut: only a photo that could not be read waits
        doubtful = live_rows & out["crop_path"].isna()
    for issue in ("no_object", "cut_by_border", "several_objects", "low_contrast", "undecodable"):
        add_review(out, doubtful & (out["crop_issue"] == issue), f"crop_{issue}")
    add_review(out, doubtful & (out["crop_issue"] == "none"), "crop_low_confidence")
    metrics = {
        "images": len(args) + len(known), "images_reused": len(known),
        "cropped": int(out["crop_path"].notna().sum()),
        "issues": {str(k): int(v) for k, v in out.loc[live_rows, "crop_issue"].value_counts().items()},
        "needs_review": int(doubtful.sum()),
        "median_confidence": float(out.loc[live_rows, "crop_confidence"].median())
        if live_rows.any() else None,
        "seconds": round(t_crop, 3),
        "images_per_second": round(len(args) / t_crop, 1) if args and t_crop > 0 else None,
    }
    return out, metrics


def run_shard(params: Params, shard: tuple[int, int], data_dir: str | Path | None = None,
              progress: bool | None = None) -> dict:
    """Shard ``i`` of ``n`` of the per-image results into ``crop/shards/`` (scale-out; what a
    shard writes and why it holds no lock: :mod:`pipeline.core.stagerun`)."""
    io = StageIO.of(params, data_dir)
    cache = ResultCache(io.data_dir / "crop", params.crop, CODE)
    show = params.crop.progress if progress is None else progress
    return compute_shard(cache, io.read("labels"), shard,
                         lambda d: run(d, params, store_root=io.images(d), crops_dir=io.data_dir / "crops",
                                       cache=cache, progress=show)[1])


@stage("crop", reads="labels", per_shard=run_shard)
def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:
    """Read ``labels.parquet``, crop, write ``crop.parquet``, crops and ``metrics/crop.json``."""
    cache = ResultCache(ctx.io.data_dir / "crop", ctx.params.crop, CODE)
    out, metrics = run(df, ctx.params, store_root=ctx.io.images(df),
                       crops_dir=ctx.io.data_dir / "crops", cache=cache, progress=ctx.progress)
    return StageResult(metrics, out, state=(cache,),
                       summary=f"crop: {metrics['cropped']} cropped of {metrics['images']}, "
                               f"{metrics['needs_review']} need review")
