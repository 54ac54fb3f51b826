"""``gemcurate verify``: check a whole data folder and say what is damaged.

What a stage checks as it reads, all at once and in full, for a person who wants to
know before a run (after a disk error, a restore, a copy to another machine):

* the image store: every blob an active manifest row names is hashed and compared with
  its name (the record of :mod:`pipeline.core.blobcheck` is refreshed as it goes);
* every manifest under ``manifests/``: readable, its ids and paths well-formed;
* the caches (fingerprints, embeddings, filter and crop rows): readable — a damaged
  cache costs a recomputation, never a result, so it is a warning;
* the split ledger: readable (it is memory, not a cache: a damaged one is an error);
* the exported dataset: every file against ``SHA256SUMS`` and every image in the
  shards against the manifest's sha256.

Example:
    >>> report = verify_data_dir(params)
    >>> report.ok, report.lines()
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from pipeline.core import blobcheck, manifest
from pipeline.core.config import Params
from pipeline.core.errors import UserError
from pipeline.core.stageio import StageIO

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """What was checked, and what was found damaged (errors) or costly (warnings)."""

    checked: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = ["checked: " + ", ".join(f"{k} {v:,}" for k, v in self.checked.items())]
        out += [f"DAMAGED  {e}" for e in self.errors]
        out += [f"warning  {w}" for w in self.warnings]
        out.append("ok: nothing damaged" if self.ok else
                   f"{len(self.errors)} damaged: restore the data (`dvc checkout`, `dvc pull`) or "
                   "rerun the stage that writes it; a missing or altered image is fetched again "
                   "by `gemcurate scrape`")
        return out


def verify_data_dir(params: Params, data_dir: str | Path | None = None,
                    progress: bool = False) -> Report:
    """Check the data folder of ``params`` (or ``data_dir``) in full; never raises on damage."""
    io = StageIO.of(params, data_dir)
    rep = Report()
    _store(io, rep, progress)
    _manifests(io, rep)
    _caches(io, rep)
    _ledger(io, params, rep)
    _dataset(io, rep)
    return rep


def _store(io: StageIO, rep: Report, progress: bool) -> None:
    raw_path = manifest.manifest_path(io.data_dir, "raw")
    if not raw_path.exists():
        rep.warnings.append(f"{raw_path}: no raw manifest yet (nothing scraped): store not checked")
        return
    try:
        raw = manifest.read_manifest(raw_path)
    except UserError as exc:
        rep.errors.append(str(exc))
        return
    rows = raw[raw["path"].notna() & (raw["status"].fillna("active") == "active")]
    rows = rows.drop_duplicates("path")
    known = blobcheck.load_record(io.data_dir)
    try:  # ids and paths well-formed: checked for the whole table at once
        manifest.check_identity(rows[["image_id", "path"]])
        whole_ok = True
    except UserError:
        whole_ok = False  # then row by row, to name each bad one and check the rest
    for rel, image_id in tqdm(list(zip(rows["path"], rows["image_id"], strict=True)), unit="blob",
                              desc="verify store", disable=not progress):
        if not whole_ok:
            try:
                manifest.check_identity(pd.DataFrame({"image_id": [image_id], "path": [rel]}))
            except UserError as exc:
                rep.errors.append(f"raw.parquet: {exc}")
                continue
        problem, _ = blobcheck.check(io.store_root, rel, image_id, known, full=True)
        if problem:
            rep.errors.append(problem)
    blobcheck.save_record(io.data_dir, known)
    rep.checked["blobs"] = len(rows)


def _manifests(io: StageIO, rep: Report) -> None:
    n = 0
    for path in sorted((io.data_dir / "manifests").glob("*.parquet")):
        n += 1
        try:
            df = manifest.read_manifest(path)
            manifest.check_identity(df)
        except UserError as exc:
            rep.errors.append(f"{path}: {exc}")
    rep.checked["manifests"] = n


def _readable_parquet(path: Path) -> str | None:
    try:
        pd.read_parquet(path)
    except Exception as exc:  # any failure to read is the answer
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    return None


def _caches(io: StageIO, rep: Report) -> None:
    d = io.data_dir
    files = [*sorted((d / "dedupe").glob("*.parquet")), *sorted((d / "embeddings").rglob("*.parquet")),
             *[d / s / "results.parquet" for s in ("filter", "crop")]]
    n = 0
    for f in files:
        if not f.exists():
            continue
        n += 1
        why = _readable_parquet(f)
        if why:
            rep.warnings.append(f"{f}: unreadable cache ({why}); the next run recomputes its rows")
    for key in [*(d / s / "key.json" for s in ("filter", "crop")), d / "dedupe" / "index.json"]:
        if key.exists():
            n += 1
            try:
                json.loads(key.read_text())
            except (OSError, ValueError) as exc:
                rep.warnings.append(f"{key}: unreadable ({exc}); the next run recomputes its cache")
    rep.checked["cache files"] = n


def _ledger(io: StageIO, params: Params, rep: Report) -> None:
    from pipeline.stages import split

    if not (io.data_dir / "split").exists():
        return
    try:
        split.Ledger(io.data_dir).load(params.split)
        rep.checked["split ledger"] = 1
    except UserError as exc:
        rep.errors.append(str(exc))


def _dataset(io: StageIO, rep: Report) -> None:
    from pipeline.stages.publish import PublishError, verify_dir

    ds = io.data_dir / "dataset"
    if not (ds / "SHA256SUMS").exists():
        return
    try:
        rep.checked["dataset images"] = verify_dir(ds, deep=True)
    except (PublishError, OSError, ValueError) as exc:
        rep.errors.append(f"{ds}: {exc}")
