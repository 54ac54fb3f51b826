"""The manifest contract: one parquet table per stage output, one row per image.

Every column's meaning and type is declared here, once. Stages add columns and
never drop rows before ``split``: an excluded image keeps its row with
``excluded_reason`` set. Derived column names come from :func:`score_col`,
:func:`flag_col` so that every check is named the same way everywhere (the
Great Expectations suites read the same declarations).

Example:
    >>> df = conform(df, "raw")          # cast to declared dtypes, check required columns
    >>> write_manifest(df, "data/manifests/raw.parquet")   # atomic
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import atomic
from pipeline.core.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Column:
    """A declared manifest column.

    Attributes:
        name: Column name, or a prefix ending in ``*`` for a family (``attr_*``).
        dtype: The pandas dtype every stage writes (nullable extension types).
        nullable: Whether missing values are allowed.
        stage: The stage that first writes it.
        doc: What it means.
    """

    name: str
    dtype: str
    nullable: bool
    stage: str
    doc: str
    #: every manifest of its stage and later holds it (False: only where the stage ran)
    required: bool = True
    #: later stages' manifests hold it too (False: the crawl's own bookkeeping, kept in the
    #: raw manifest only: a refresh that saw the same images changes it, and carried on it
    #: would make every stage after it run again for nothing)
    carried: bool = True


TIMESTAMP = "datetime64[us, UTC]"

COLUMNS: tuple[Column, ...] = (
    # --- core (scrape) ---------------------------------------------------------
    Column("image_id", "string", False, "raw",
           "sha256 of the downloaded bytes; for a row without bytes (download failed) "
           "the sha256 of 'url:' + source_url"),
    Column("path", "string", True, "raw",
           "store-relative content-addressed path ab/cd/<sha256>.<ext>; null when nothing was stored"),
    Column("label", "string", False, "raw", "class label from the catalog"),
    Column("product_id", "string", False, "raw", "the store's product id (SKU), stable across refreshes"),
    Column("site", "string", False, "raw", "site adapter name (sites/<site>.yaml)"),
    Column("source_url", "string", False, "raw",
           "absolute URL the image was downloaded from; unique per site"),
    Column("product_url", "string", False, "raw", "product page the image was listed on"),
    Column("image_index", "Int64", False, "raw", "position of the image in the product gallery"),
    Column("fetched_at", TIMESTAMP, True, "raw", "when the bytes were last downloaded (UTC)"),
    Column("width", "Int64", True, "raw", "pixels; null if not decodable"),
    Column("height", "Int64", True, "raw", "pixels; null if not decodable"),
    Column("format", "string", True, "raw", "decoded format (JPEG, PNG, WEBP, ...)"),
    Column("n_bytes", "Int64", True, "raw", "size of the downloaded file"),
    Column("content_type", "string", True, "raw", "Content-Type header of the image response"),
    Column("etag", "string", True, "raw", "ETag of the image response, for conditional refreshes"),
    Column("excluded_reason", "string", True, "raw",
           "why the image is out of the dataset (null: it is in); the row is kept either way"),
    Column("excluded_detail", "string", True, "raw", "human-readable detail of excluded_reason"),
    Column("status", "string", False, "raw", "'active' (listed in the last complete crawl) or 'removed'"),
    Column("change", "string", False, "raw",
           "what the last crawl saw: added, changed, unchanged or removed", carried=False),
    Column("first_seen_run", "Int64", False, "raw", "crawl run that first listed the image",
           carried=False),
    Column("last_seen_run", "Int64", False, "raw", "last crawl run that listed the image",
           carried=False),
    Column("attr_*", "string", True, "raw", "catalog attributes from the product page (attr_price, ...)"),
    # --- dedupe ---------------------------------------------------------------------
    Column("label_original", "string", True, "dedupe",
           "the store's label when an annotator relabelled the image (else equal to label)"),
    Column("dup_cluster", "string", True, "dedupe",
           "duplicate cluster: the smallest image_id among photos showing the same picture; "
           "null for rows without decodable bytes"),
    Column("dup_size", "Int64", True, "dedupe", "rows in the cluster"),
    Column("is_representative", "boolean", False, "dedupe",
           "the one row of its cluster that stays (highest resolution, then earliest fetched)"),
    Column("dup_of", "string", True, "dedupe", "image_id of the cluster's representative (clusters > 1)"),
    Column("pixel_sha256", "string", True, "dedupe", "sha256 of the decoded pixels"),
    Column("phash", "string", True, "dedupe", "64-bit pHash (imagehash), hex"),
    Column("dhash", "string", True, "dedupe", "64-bit dHash (imagehash), hex"),
    # --- filter -----------------------------------------------------------------------
    Column("ocr_text_boxes", "float64", True, "filter",
           "text boxes rapidocr found (only images in the certificate review band)"),
    Column("head_certificate", "float64", True, "filter",
           "the learned junk head's probability of a certificate (null without filter.embedding)"),
    Column("head_hand", "float64", True, "filter",
           "the learned junk head's probability of a hand (null without filter.embedding)"),
    Column("pose_hand", "float64", True, "filter",
           "MediaPipe's hand-presence probability, best over the palms found (null without "
           "filter.hand_pose, or where the junk head is too sure of a product for it to count)"),
    Column("decision", "string", True, "filter", "annotator decision in force: accept, reject, relabel"),
    Column("decided_by", "string", True, "filter", "who made that decision"),
    Column("decided_at", TIMESTAMP, True, "filter", "when"),
    # --- labels (present where the labels stage ran) ------------------------------------
    Column("label_issue", "boolean", True, "labels",
           "confident learning doubts the label (out-of-fold probe on the shared embedding)", False),
    Column("label_quality", "float64", True, "labels",
           "out-of-fold probability of the given label (low: likely mislabelled)", False),
    Column("label_suggestion", "string", True, "labels", "the probe's most likely class", False),
    Column("label_suggestion_p", "float64", True, "labels", "its probability", False),
    Column("label_top", "string", True, "labels",
           'JSON [[class, probability], ...]: the probe\'s top three', False),
    # --- crop -------------------------------------------------------------------------
    Column("crop_box", "object", True, "crop",
           "[x0, y0, x1, y1] square crop in the original image's pixels (may extend past it: padded)"),
    Column("object_box", "object", True, "crop", "[x0, y0, x1, y1] tight box of the detected object"),
    Column("crop_confidence", "float64", True, "crop", "0..1: how clearly one whole object was found"),
    Column("crop_issue", "string", True, "crop",
           "none, no_object, cut_by_border, several_objects, low_contrast, fills_frame (the "
           "stone reaches every edge: the frame is the crop)"),
    Column("crop_path", "string", True, "crop", "the target-size crop, relative to <data_dir>/crops"),
    Column("background_rgb", "object", True, "crop", "[r, g, b] background colour used for padding"),
    # --- split ------------------------------------------------------------------------
    Column("split", "string", True, "split",
           "train, val or test; null for rows outside the dataset (see excluded_reason)"),
    Column("split_group", "string", True, "split",
           "the leak-free unit: products joined by shared duplicate clusters; all its images share a split"),
    Column("image_path", "string", True, "split",
           "the dataset image (crop or variant), relative to the data dir"),
    # --- augment ----------------------------------------------------------------------
    Column("parent_id", "string", True, "augment", "for an augmented variant: the image_id it was made from"),
    Column("transform", "string", True, "augment",
           "JSON of the transform's drawn parameters (rotate, mirror, extras); null for originals"),
    # --- the dataset (export) ----------------------------------------------------------
    Column("attributes", "string", True, "export",
           "JSON of the product's normalised attributes (pipeline/core/captions.py)", False),
    Column("caption_basic", "string", True, "export", "caption: the kind of piece or stone", False),
    Column("caption_normal", "string", True, "export", "caption: with colour and material or cut", False),
    Column("caption_complete", "string", True, "export", "caption: every attribute the template has", False),
    Column("caption_partial", "boolean", True, "export",
           "the store lacked a field the caption template uses (see caption_missing)", False),
    Column("caption_missing", "string", True, "export", "the template's fields the store lacked", False),
    # --- review (any stage) --------------------------------------------------------
    Column("needs_review", "boolean", True, "dedupe", "an annotator should look at this image"),
    Column("review_reason", "string", True, "dedupe",
           "why it needs review (label_conflict, certificate, hand, crop_*, ...; several joined by ';')"),
    Column("*_score", "float64", True, "filter", "score of check <check> (see score_col)"),
    Column("is_*", "boolean", True, "filter", "decision of check <check> (see flag_col); is_worn: a hand "
           "wears or holds the product (filter.hand_policy keep; null under junk)"),
)

STAGE_ORDER = ("raw", "dedupe", "filter", "labels", "crop", "split", "augment")

SPLITS = ("train", "val", "test")

_CHECK_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def score_col(check: str) -> str:
    """Name of the score column of ``check``: ``<check>_score``."""
    if not _CHECK_RE.match(check):
        raise ValueError(f"bad check name {check!r}")
    return f"{check}_score"


def flag_col(check: str) -> str:
    """Name of the boolean decision column of ``check``: ``is_<check>``."""
    if not _CHECK_RE.match(check):
        raise ValueError(f"bad check name {check!r}")
    return f"is_{check}"


def attr_col(name: str) -> str:
    """Name of a catalog attribute column: ``attr_<name>`` (lower snake case)."""
    clean = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not clean:
        raise ValueError(f"bad attribute name {name!r}")
    return f"attr_{clean}"


def column_for(name: str) -> Column | None:
    """The declaration governing column ``name`` (exact names first, then families)."""
    for col in COLUMNS:
        if col.name == name:
            return col
    for col in COLUMNS:
        if "*" in col.name and re.fullmatch(re.escape(col.name).replace(r"\*", ".+"), name):
            return col
    return None


def required_columns(stage: str) -> list[str]:
    """Exact (non-family) column names every manifest of ``stage`` must hold."""
    upto = STAGE_ORDER[: STAGE_ORDER.index(stage) + 1]
    return [c.name for c in COLUMNS if "*" not in c.name and c.stage in upto and c.required
            and (c.carried or c.stage == stage)]


def not_carried(stage: str) -> list[str]:
    """Columns an earlier stage wrote that ``stage``'s manifest leaves out (:attr:`Column.carried`)."""
    return [c.name for c in COLUMNS if not c.carried and c.stage != stage]


class ManifestError(UserError, ValueError):
    """A manifest breaks the contract."""


def text_problem(value: str) -> str | None:
    """Why ``value`` may not be a label or a reviewer's name (None when it may).

    Store category names and annotator input both become labels.

    Labels end up in CSV tables people open in spreadsheets and in folder-like ids: no
    control characters, no path separators, and no leading ``= + - @`` (a formula).
    """
    if not value or value != value.strip():
        return "empty or padded with spaces"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "has control characters"
    if value[0] in "=+-@":
        return f"starts with {value[0]!r} (a spreadsheet would run it as a formula)"
    if "/" in value or "\\" in value or value in (".", ".."):
        return "looks like a path"
    return None



SHA256_RE = r"[0-9a-f]{64}"
EXT_RE = r"[a-z0-9]{1,5}"


def check_identity(df: pd.DataFrame) -> None:
    """Refuse a manifest whose ids or paths a hostile or broken file could have chosen.

    Every path a stage reads or writes is derived from a validated ``image_id`` (the
    sha256 of the bytes), so a row on disk can never point outside the image store or
    the data dir: ``image_id`` is 64 hex digits; ``path`` is the content-addressed
    ``ab/cd/<sha>.<ext>`` of the image (of its parent, for an augmented variant);
    ``crop_path`` is ``ab/<sha>.<ext>`` of the same; ``image_path`` is
    ``crops/<crop_path>`` or ``augment/ab/<image_id>.<ext>``.

    Raises:
        ManifestError: Naming the column, the first offending row and its value.
    """
    if "image_id" not in df.columns or not len(df):
        return
    ids = df["image_id"].astype("string")
    bad = ~ids.fillna("").str.fullmatch(SHA256_RE)
    if bad.any():
        raise ManifestError(f"column image_id: {int(bad.sum())} value(s) are not a sha256 hex digest, "
                            f"e.g. {str(ids[bad].iloc[0])[:80]!r}")
    # a variant shares its parent's stored photo and crop: its paths may name either id
    sources = [ids]
    if "parent_id" in df.columns:
        parent = df["parent_id"].astype("string")
        if parent.notna().any():
            bad = parent.notna() & ~parent.fillna("").str.fullmatch(SHA256_RE)
            if bad.any():
                raise ManifestError(f"column parent_id: {int(bad.sum())} value(s) are not a sha256 "
                                    f"hex digest, e.g. {str(parent[bad].iloc[0])[:80]!r}")
            sources.append(parent.where(parent.notna(), ids))
    shapes = {"path": (lambda x: x.str[:2] + "/" + x.str[2:4] + "/" + x + "."),
              "crop_path": (lambda x: x.str[:2] + "/" + x + ".")}
    for col, shape in shapes.items():
        if col not in df.columns:
            continue
        v = df[col].astype("string")
        ext = v.str.rsplit(".", n=1).str[-1].fillna("")
        ok = pd.Series(False, index=df.index)
        for src in sources:
            ok |= (v == shape(src) + ext).fillna(False)
        wrong = v.notna() & ~(ok & ext.str.fullmatch(EXT_RE).fillna(False))
        if wrong.any():
            i = wrong.to_numpy().nonzero()[0][0]
            raise ManifestError(
                f"column {col}: row {i} (image_id {ids.iloc[i][:12]}…) holds {str(v.iloc[i])[:120]!r}, "
                f"not the content-addressed path of its image; a manifest may not choose which "
                f"files are read or written")
    if "image_path" in df.columns:
        v = df["image_path"].astype("string")
        crop = "crops/" + df["crop_path"].astype("string") if "crop_path" in df.columns else None
        ext = v.str.rsplit(".", n=1).str[-1].fillna("")
        ok = (v == "augment/" + ids.str[:2] + "/" + ids + "." + ext) & ext.str.fullmatch(EXT_RE)
        if crop is not None:
            ok = ok | (v == crop)
        wrong = v.notna() & ~ok.fillna(False)
        if wrong.any():
            i = wrong.to_numpy().nonzero()[0][0]
            raise ManifestError(f"column image_path: row {i} (image_id {ids.iloc[i][:12]}…) holds "
                                f"{str(v.iloc[i])[:120]!r}, not its crop or variant file")


def conform(df: pd.DataFrame, stage: str) -> pd.DataFrame:
    """Cast declared columns to their declared dtypes and check the contract.

    Args:
        df: The stage's output table.
        stage: One of :data:`STAGE_ORDER`.

    Returns:
        A copy with declared dtypes and declared columns first, without the columns earlier
        stages keep to themselves (:func:`not_carried`).

    Raises:
        ManifestError: A required column is missing or a non-nullable one has nulls.
    """
    missing = [c for c in required_columns(stage) if c not in df.columns]
    if missing:
        raise ManifestError(f"{stage} manifest lacks required column(s): {', '.join(missing)}")
    out = df.drop(columns=[c for c in not_carried(stage) if c in df.columns])
    for name in out.columns:
        col = column_for(name)
        if col is None:
            continue
        try:
            if col.dtype == TIMESTAMP:
                out[name] = pd.to_datetime(out[name], utc=True).astype(TIMESTAMP)
            else:
                out[name] = out[name].astype(col.dtype)
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"column {name}: cannot cast to {col.dtype}: {exc}") from exc
        if not col.nullable and out[name].isna().any():
            n = int(out[name].isna().sum())
            raise ManifestError(f"column {name}: {n} null value(s) in a non-nullable column")
    check_identity(out)
    declared = [c for c in required_columns(stage) if c in out.columns]
    rest = [c for c in out.columns if c not in declared]
    return out[declared + sorted(rest)].reset_index(drop=True)


def empty(stage: str) -> pd.DataFrame:
    """An empty, typed manifest of ``stage``."""
    cols = {}
    for name in required_columns(stage):
        col = column_for(name)
        assert col is not None
        cols[name] = pd.Series([], dtype=col.dtype)
    return pd.DataFrame(cols)


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Atomically write ``df`` as parquet (temporary sibling, then rename)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    logger.debug("wrote %d rows to %s", len(df), path)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found (has the previous stage run?)")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise ManifestError(f"{path}: not a readable parquet file ({str(exc)[:200]})") from None


def manifest_path(data_dir: str | Path, stage: str) -> Path:
    """``<data_dir>/manifests/<stage>.parquet``."""
    return Path(data_dir) / "manifests" / f"{stage}.parquet"
