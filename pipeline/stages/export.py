"""Export stage: the dataset as tar shards, a manifest and a dataset card.

DVC is slow with many small files, so the dataset images are packed into tar
shards of about ``export.shard_mb`` (WebDataset layout: ``<image_id>.png`` plus
``<image_id>.json`` with the label, split and lineage), one series per split,
written deterministically (sorted members, fixed mtime/owner), so the same
dataset always gives byte-identical shards and DVC stores it once.

``<data_dir>/dataset/`` holds:

* ``shards/<split>-NNNNN.tar``;
* ``manifest.parquet`` — one row per image: label, split, lineage, source,
  the shard and member name, and ``sha256`` of the image bytes;
* ``SHA256SUMS`` — checksums of every file above (``sha256sum -c`` works);
* ``README.md`` — the dataset card: counts, class-distribution plot, sources
  and dates, params, validation result; ``class_distribution.png``.

Refuses to export when ``validate/result.json`` is missing, failed, or was made
from another augment manifest.

Example:
    $ gemcurate export --data-dir data
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from pathlib import Path

import pandas as pd

from pipeline.core import captions, manifest
from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.blobstore import sha256_file, sha256_hex
from pipeline.core.config import Params, to_dict
from pipeline.core.errors import UserError
from pipeline.core.plots import pyplot, save_figure
from pipeline.core.stagerun import StageResult, StageRun, stage
from pipeline.core.validation import ValidationFailed, passed_result

logger = logging.getLogger(__name__)

CARD_COLUMNS = ["image_id", "label", "split", "parent_id", "transform", "product_id", "site",
                "source_url", "product_url", "fetched_at", "dup_cluster", "split_group",
                "crop_box", "crop_confidence", "is_worn"]
CAPTION_COLUMNS = ["attributes", "caption_basic", "caption_normal", "caption_complete",
                   "caption_partial", "caption_missing"]


class ExportRefused(UserError, RuntimeError):
    """The dataset did not pass validation (or validation is stale)."""


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = size, 0, 0o644, 0, 0, "", ""
    return ti


def write_shards(ds: pd.DataFrame, data_dir: Path, out_dir: Path, shard_bytes: int
                 ) -> pd.DataFrame:
    """Pack the images into deterministic tar shards; returns shard/member/sha256 per image."""
    shards_dir = out_dir / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    for old in shards_dir.glob("*.tar"):
        old.unlink()
    # plan: consecutive images (sorted) per split until a shard is full
    plan: list[tuple[str, list[dict]]] = []
    for split, part in ds.sort_values(["split", "label", "image_id"]).groupby("split", sort=True):
        size, k = shard_bytes, 0
        for r in part.to_dict("records"):
            # headers and padding: the image and its .json, and three caption files
            n = (data_dir / r["image_path"]).stat().st_size + 2048 + (3072 if "attributes" in r else 0)
            if size + n > shard_bytes:
                plan.append((f"{split}-{k:05d}.tar", []))
                k, size = k + 1, 0
            plan[-1][1].append(r)
            size += n
    rows = []
    for name, recs in plan:
        with atomic_path(shards_dir / name) as tmp, \
                tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for r in recs:
                data = (data_dir / r["image_path"]).read_bytes()
                member = f"{r['image_id']}{Path(r['image_path']).suffix}"
                meta = {c: r.get(c) for c in ("image_id", "label", "split", "parent_id", "transform",
                                              "product_id", "source_url")}
                if "attributes" in r:  # WebDataset: the fields, and a caption per level
                    meta["attributes"] = json.loads(r["attributes"])
                    meta["captions"] = {k: r[f"caption_{k}"] for k in captions.LEVELS}
                    meta["caption_partial"] = bool(r["caption_partial"])
                meta_b = json.dumps(meta, sort_keys=True, default=str).encode()
                tar.addfile(_tarinfo(member, len(data)), io.BytesIO(data))
                tar.addfile(_tarinfo(f"{r['image_id']}.json", len(meta_b)), io.BytesIO(meta_b))
                if "attributes" in r:
                    for level, suffix in (("normal", "txt"), ("basic", "basic.txt"),
                                          ("complete", "complete.txt")):
                        txt = str(r[f"caption_{level}"]).encode()
                        tar.addfile(_tarinfo(f"{r['image_id']}.{suffix}", len(txt)), io.BytesIO(txt))
                rows.append({"image_id": r["image_id"], "shard": f"shards/{name}", "member": member,
                             "sha256": sha256_hex(data), "n_bytes": len(data)})
    return pd.DataFrame(rows)


def run(df: pd.DataFrame, params: Params, *, data_dir: str | Path, validation: dict
        ) -> tuple[pd.DataFrame, dict]:
    """Write ``<data_dir>/dataset/`` (shards, manifest, checksums, card).

    Args:
        df: The augment manifest.
        params: All params (reads ``params.export``; the card lists the curation params).
        data_dir: Where the dataset images are and ``dataset/`` goes.
        validation: The passed validation result (:func:`pipeline.core.validation.passed_result`).

    Returns:
        The dataset manifest (one row per image with its shard, member and sha256) and
        a metrics dict.

    Example:
        >>> ds, metrics = run(augment_manifest, params, data_dir="data", validation=result)
    """
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    if not validation.get("success"):
        raise ExportRefused("export refused: the dataset did not pass validation "
                            "(see validate/summary.txt)")
    out_dir = data_dir / "dataset"
    ds = df[df["split"].notna() & df["excluded_reason"].isna()].reset_index(drop=True)
    ds = pd.concat([ds, captions.describe(ds, params.export.captions)], axis=1)
    where = write_shards(ds, data_dir, out_dir, int(params.export.shard_mb * 1e6))
    cols = [c for c in (*CARD_COLUMNS, *CAPTION_COLUMNS) if c in ds.columns]
    man = ds[cols].merge(where, on="image_id", how="left")
    for c in ("crop_box",):
        if c in man.columns:
            man[c] = man[c].map(lambda v: None if v is None else json.dumps([int(x) for x in v]))
    manifest.write_manifest(man, out_dir / "manifest.parquet")
    counts = pd.crosstab(ds["label"], ds["split"]).reindex(
        columns=[s for s in manifest.SPLITS if s in set(ds["split"])], fill_value=0)
    _plot(ds, out_dir / "class_distribution.png")
    card = _card(params, ds, counts, validation, decided_counts(df))
    write_text(out_dir / "README.md", card)
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    sums = "".join(f"{sha256_file(p)}  {p.relative_to(out_dir).as_posix()}\n" for p in files)
    write_text(out_dir / "SHA256SUMS", sums)
    shards = sorted(where["shard"].unique()) if len(where) else []
    return man, {"images": len(ds), "shards": len(shards),
                 "bytes": int(sum((out_dir / s).stat().st_size for s in shards)),
                 "per_split": {s: int((ds["split"] == s).sum()) for s in counts.columns},
                 "classes": int(ds["label"].nunique()),
                 "captions_partial": round(float(ds["caption_partial"].mean()), 4) if len(ds) else 0.0,
                 "seconds": round(time.perf_counter() - t0, 2)}


def _plot(ds: pd.DataFrame, path: Path) -> None:
    plt = pyplot()
    t = pd.crosstab(ds["label"], ds["split"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(t)), 4))
    bottom = None
    for s in [s for s in manifest.SPLITS if s in t.columns]:
        ax.bar(t.index, t[s], bottom=bottom, label=s)
        bottom = t[s] if bottom is None else bottom + t[s]
    ax.set_ylabel("images")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def decided_counts(df: pd.DataFrame) -> dict[str, int]:
    """Annotator decisions this version applies, per kind (one per photo, variants aside)."""
    if "decision" not in df.columns:
        return {}
    photos = df[df["parent_id"].isna()] if "parent_id" in df.columns else df
    kinds = photos.drop_duplicates("image_id")["decision"].dropna().astype(str)
    return {k: int(v) for k, v in kinds.value_counts().sort_index().items()}


def _card(params: Params, ds: pd.DataFrame, counts: pd.DataFrame, validation: dict,
          decided: dict[str, int] | None = None) -> str:
    photos = ds[ds["parent_id"].isna()]
    fetched = pd.to_datetime(ds["fetched_at"], utc=True) if "fetched_at" in ds else pd.Series([])
    sites = ", ".join(sorted(ds["site"].dropna().unique())) if "site" in ds else ""
    table = counts.copy()
    table["total"] = table.sum(axis=1)
    md_rows = ["| class | " + " | ".join(table.columns) + " |",
               "|---|" + "---|" * len(table.columns)]
    md_rows += [f"| {lab} | " + " | ".join(str(int(v)) for v in row) + " |"
                for lab, row in table.iterrows()]
    p = to_dict(params)
    used = {k: p[k] for k in ("dedupe", "filter", "labels", "crop", "split", "augment", "validate")}
    return "\n".join([
        f"# {params.export.name}",
        "",
        params.export.description,
        "",
        f"- images: **{len(ds):,}** ({len(photos):,} photos, {len(ds) - len(photos):,} augmented "
        f"variants, train only)",
        f"- classes: **{ds['label'].nunique()}**; splits: "
        + ", ".join(f"{s} {int((ds['split'] == s).sum()):,}" for s in counts.columns),
        f"- sources: {sites}; fetched {fetched.min():%Y-%m-%d} … {fetched.max():%Y-%m-%d}"
        if len(fetched.dropna()) else "- sources: unknown",
        f"- products: {ds['product_id'].nunique():,}; split groups: {ds['split_group'].nunique():,} "
        "(no product or duplicate cluster spans two splits)",
        *([f"- in train only (fewer than {params.split.min_heldout_images} photos: learnt, not "
           f"scored by val or test): {', '.join(whole)}"] if (whole := params.split.train_only(
               photos["label"].astype(str).value_counts())) else []),
        f"- annotator decisions applied: **{sum((decided or {}).values())}**"
        + (" (" + ", ".join(f"{k} {v}" for k, v in decided.items()) + ")" if decided else ""),
        f"- validation: **{'passed' if validation.get('success') else 'FAILED'}** "
        f"({sum(t['expectations'] for t in validation.get('tables', {}).values())} expectations "
        f"on {len(validation.get('tables', {}))} tables)",
        "",
        "![class distribution](class_distribution.png)",
        "",
        "## Images per class and split",
        "",
        *md_rows,
        "",
        "## Layout",
        "",
        "`shards/<split>-NNNNN.tar` (WebDataset: `<image_id>.png` + `<image_id>.json`), "
        "`manifest.parquet` (one row per image with its shard, member and sha256), `SHA256SUMS`.",
        "",
        "## Parameters",
        "",
        "```json",
        json.dumps(used, indent=2),
        "```",
        "",
    ])


@stage("export")
def main(ctx: StageRun, _: None) -> StageResult:
    """Read ``augment.parquet`` and ``validate/result.json``; write ``dataset/``."""
    io = ctx.io
    try:
        validation = passed_result(io.data_dir)
    except ValidationFailed as exc:
        raise ExportRefused(f"export refused: {exc}") from exc
    _, metrics = run(io.read("augment"), ctx.params, data_dir=io.data_dir, validation=validation)
    return StageResult(metrics, summary=f"export: {metrics['images']} images in {metrics['shards']} "
                                        f"shards → {io.data_dir / 'dataset'}")
