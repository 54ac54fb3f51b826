"""Curation report: one HTML page with PNG figures an annotator or engineer can scan.

Counts per exclusion and review reason, images per class before and after
curation (bar chart), a contact sheet of *every* flagged image per reason
(label, score and reason under each thumbnail), crop before/after examples
with the detected box drawn, and duplicate clusters side by side.

Example:
    $ gemcurate report --data-dir data     # writes data/report/index.html
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from pipeline.core import manifest
from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.config import Params
from pipeline.core.imageio import ImageError, load_rgb
from pipeline.core.plots import font, pyplot, save_figure
from pipeline.core.stagerun import StageResult, StageRun, stage

logger = logging.getLogger(__name__)

THUMB = 128
PER_SHEET = 60


def _thumb(path: Path, box: list[int] | None = None) -> Image.Image:
    try:
        loaded = load_rgb(path, max_side=THUMB * 2)
        im = Image.fromarray(loaded.array)
        if box is not None:
            f = loaded.scale
            ImageDraw.Draw(im).rectangle([v * f for v in box], outline=(255, 0, 0), width=2)
    except (ImageError, OSError):
        im = Image.new("RGB", (THUMB, THUMB), (80, 0, 0))
    im.thumbnail((THUMB, THUMB))
    return im


def contact_sheet(items: list[tuple[Path, str, list[int] | None]], dest: Path, cols: int = 6) -> None:
    """Thumbnails with a caption under each, written atomically as PNG."""
    rows = max(1, -(-len(items) // cols))
    cell_h = THUMB + 30
    sheet = Image.new("RGB", (cols * (THUMB + 8), rows * cell_h), "white")
    d = ImageDraw.Draw(sheet)
    f = font(10)
    for k, (path, caption, box) in enumerate(items):
        x, y = (k % cols) * (THUMB + 8) + 4, (k // cols) * cell_h + 2
        sheet.paste(_thumb(path, box), (x, y))
        for line_no, line in enumerate(caption.split("\n")[:2]):
            d.text((x, y + THUMB + 2 + 12 * line_no), line[:24], fill=(0, 0, 0), font=f)
    with atomic_path(dest) as tmp:
        sheet.save(tmp, "PNG")


def class_chart(df: pd.DataFrame, dest: Path) -> None:
    """Images per class before (all downloaded) and after curation (still in)."""
    before = df[df["path"].notna()].groupby("label").size()
    after = df[df["excluded_reason"].isna()].groupby("label").size().reindex(before.index, fill_value=0)
    fig, ax = pyplot().subplots(figsize=(max(6, 0.5 * len(before)), 3.5))
    x = np.arange(len(before))
    ax.bar(x - 0.2, before.to_numpy(), 0.4, label="downloaded")
    ax.bar(x + 0.2, after.to_numpy(), 0.4, label="after curation")
    ax.set_xticks(x, before.index, rotation=45, ha="right")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, dest, dpi=90)


# long: one HTML page assembled top to bottom, a section per block
def build(df: pd.DataFrame, store_root: Path, crops_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and its PNGs; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = ["<html><head><meta charset='utf-8'><title>gemcurate curation report</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px}"
             "img{max-width:100%}</style></head><body><h1>Curation report</h1>"]
    parts.append(f"<p>{len(df)} rows, {int(df['path'].notna().sum())} downloaded, "
                 f"{int(df['excluded_reason'].isna().sum())} in the dataset, "
                 f"{int(df['needs_review'].fillna(False).sum())} waiting for review.</p>")
    counts = df["excluded_reason"].fillna("(in dataset)").value_counts()
    parts.append("<h2>Exclusions</h2><table><tr><th>reason</th><th>images</th></tr>")
    parts += [f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in counts.items()]
    parts.append("</table>")
    reasons = df["review_reason"].dropna().str.split(";").explode()
    parts.append("<h2>Review queue</h2><table><tr><th>reason</th><th>images</th></tr>")
    parts += [f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>"
              for k, v in reasons.value_counts().items()]
    parts.append("</table>")
    class_chart(df, out_dir / "classes.png")
    parts.append("<h2>Images per class</h2><img src='classes.png'>")

    def caption(r: pd.Series, reason: str) -> str:
        sc = r.get(manifest.score_col(reason)) if manifest.score_col(reason) in r.index else None
        s = f" {sc:.2f}" if sc is not None and pd.notna(sc) else ""
        return f"{r['label']}{s}\n{str(r['image_id'])[:10]}"

    parts.append("<h2>Flagged images, by reason</h2>")
    flagged = df[df["path"].notna()]
    groups: dict[str, pd.DataFrame] = {}
    for reason, grp in flagged[flagged["excluded_reason"].notna()].groupby("excluded_reason"):
        if reason != "duplicate":
            groups[f"excluded: {reason}"] = grp
    for reason in reasons.dropna().unique():
        groups[f"review: {reason}"] = flagged[flagged["review_reason"].fillna("").str.split(";")
                                              .map(lambda rs, r=reason: r in rs)]
    for name, grp in groups.items():
        slug = "".join(c if c.isalnum() else "_" for c in name)
        key = name.split(": ", 1)[1].removeprefix("crop_")
        for page, start in enumerate(range(0, len(grp), PER_SHEET)):
            chunk = grp.iloc[start:start + PER_SHEET]
            items = [(store_root / r["path"], caption(r, key),
                      list(r["object_box"]) if "object_box" in r.index and r["object_box"] is not None
                      and not (isinstance(r["object_box"], float)) else None)
                     for _, r in chunk.iterrows()]
            fn = f"sheet_{slug}_{page}.png"
            contact_sheet(items, out_dir / fn)
            parts.append(f"<h3>{html.escape(name)} ({len(grp)})</h3><img src='{fn}'>")
    if "crop_path" in df:
        ex = df[df["crop_path"].notna()].head(12)
        items = []
        for _, r in ex.iterrows():
            items.append((store_root / r["path"], f"{r['label']} before", list(r["object_box"])))
            items.append((crops_dir / r["crop_path"], f"conf {r['crop_confidence']:.2f}", None))
        if items:
            contact_sheet(items, out_dir / "crops.png", cols=6)
            parts.append("<h2>Crops, before and after</h2><img src='crops.png'>")
    if "dup_size" in df:
        multi = df[(df["dup_size"] > 1) & df["path"].notna()].sort_values(["dup_cluster", "image_id"])
        items = [(store_root / r["path"], f"{r['label']} {'KEEP' if r['is_representative'] else ''}\n"
                  f"{str(r['dup_cluster'])[:10]}", None) for _, r in multi.head(120).iterrows()]
        if items:
            contact_sheet(items, out_dir / "duplicates.png", cols=6)
            parts.append(f"<h2>Duplicate clusters ({multi['dup_cluster'].nunique()})</h2>"
                         "<img src='duplicates.png'>")
    parts.append("</body></html>")
    dest = out_dir / "index.html"
    write_text(dest, "\n".join(parts))
    return dest


def run(df: pd.DataFrame, params: Params, *, store_root: str | Path, crops_dir: str | Path,
        out_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Write the report for a curation manifest into ``out_dir``.

    Returns:
        Images per outcome (``reason``: an excluded_reason, ``review:<reason>`` or
        ``(in dataset)``) and a metrics dict with the report's path.

    Example:
        >>> counts, metrics = run(crop_manifest, params, store_root="data/store",
        ...                       crops_dir="data/crops", out_dir="data/report")
    """
    dest = build(df, Path(store_root), Path(crops_dir), Path(out_dir))
    excluded = df["excluded_reason"].fillna("(in dataset)").value_counts()
    review = "review:" + df["review_reason"].dropna().str.split(";").explode()
    counts = pd.concat([excluded, review.value_counts()]).rename_axis("reason").rename("images")
    return counts.reset_index(), {"report": str(dest), "rows": len(df),
                                  "needs_review": int(df["needs_review"].fillna(False).sum())}


@stage("report")
def main(ctx: StageRun, _: None) -> StageResult:
    """Report on the latest curation manifest (crop, else filter, else dedupe)."""
    io = ctx.io
    for name in ("crop", "labels", "filter", "dedupe"):
        if manifest.manifest_path(io.data_dir, name).exists():
            break
    df = io.read(name)
    _, metrics = run(df, ctx.params, store_root=io.images(df),
                     crops_dir=io.data_dir / "crops", out_dir=io.data_dir / "report")
    return StageResult({**metrics, "manifest": name}, summary=f"report: {metrics['report']}",
                       write_metrics=False)
