"""Per-image results of a stage, reused on the next run while nothing that shapes them changed.

A refresh adds a few images to a catalog of thousands; scoring or cropping every
image again would make it cost as much as the first run. The filter and crop
stages therefore keep their per-image rows in ``<data_dir>/<stage>/results.parquet``
with a *key*: the stage's params (less ``workers``/``progress``) and a hash of the
source files that compute the rows. A different key discards the cache; the same
key reuses every row whose ``image_id`` is still wanted (image ids are content
hashes, so the same id is the same pixels).

DVC declares the folder as a ``persist: true`` output so ``dvc repro`` keeps it.

The stage's ``run()`` reads it (:func:`reuse`) and hands it the merged rows
(:func:`combine`); ``main()`` writes them (:meth:`ResultCache.save`) with the outputs.

Example:
    >>> cache = ResultCache(data_dir / "crop", params.crop, CODE)
    >>> old, known = reuse(cache, wanted_ids)   # rows computed before, and their ids
    >>> rows = combine(cache, old, fresh)       # staged for cache.save()
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import atomic_path, write_text
from pipeline.core.stageio import Staged

logger = logging.getLogger(__name__)

IGNORED = {"workers", "progress"}


def params_key(params: object) -> dict:
    """A dataclass's fields as JSON-able values, without the ones that do not change results."""
    d = dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)  # type: ignore[arg-type]
    return {k: v for k, v in d.items() if k not in IGNORED}


def code_key(files: Iterable[str | Path]) -> str:
    """sha256 over the bytes of the source files, named relative to the package.

    Names, not absolute paths, so the key is the same in any checkout or
    installation of the same code.
    """
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(Path(p).resolve() for p in files):
        h.update(f.relative_to(root).as_posix().encode() if f.is_relative_to(root) else f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class ResultCache(Staged):
    """``results.parquet`` + ``key.json`` in a stage's folder."""

    def __init__(self, folder: str | Path, params: object, code: Iterable[str | Path]) -> None:
        self.folder = Path(folder)
        self.rows_path = self.folder / "results.parquet"
        self.key_path = self.folder / "key.json"
        self.key = {"params": params_key(params), "code": code_key(code)}

    def load(self) -> pd.DataFrame | None:
        """The cached rows, or None when absent, unreadable or made under another key."""
        if not self.rows_path.exists() or not self.key_path.exists():
            return None
        try:
            key = json.loads(self.key_path.read_text())
            if key != json.loads(json.dumps(self.key, default=str)):
                logger.info("%s: params or code changed: recomputing every image", self.folder.name)
                return None
            rows = pd.read_parquet(self.rows_path)
        except (OSError, ValueError) as exc:  # a damaged cache costs time, never results
            logger.warning("%s: ignoring unreadable cache (%s)", self.rows_path, exc)
            return None
        return rows if "image_id" in rows.columns else None

    def write(self, rows: pd.DataFrame) -> None:
        """Write ``rows`` (one per image_id) with their key (``main()`` calls :meth:`save`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key_path.unlink(missing_ok=True)  # rows without their key are never trusted
        with atomic_path(self.rows_path) as tmp:
            rows.reset_index(drop=True).to_parquet(tmp, index=False)
        write_text(self.key_path, json.dumps(self.key, indent=2, sort_keys=True, default=str))


def reuse(cache: ResultCache | None, wanted: Iterable[str]) -> tuple[pd.DataFrame | None, set[str]]:
    """Cached rows for the ``wanted`` ids, and the set of ids they cover."""
    old = cache.load() if cache is not None else None
    if old is None or not len(old):
        return None, set()
    wanted = set(wanted)
    old = old[old["image_id"].isin(wanted)].drop_duplicates("image_id")
    return old, set(old["image_id"])


def combine(cache: ResultCache | None, old: pd.DataFrame | None, fresh: pd.DataFrame) -> pd.DataFrame:
    """Reused rows plus freshly computed ones; staged in ``cache`` without the failed rows.

    A row with an ``_error`` (an unreadable file) is returned, so the stage reports it,
    but never cached: the next run tries that image again.
    """
    parts = [x for x in (old, fresh) if x is not None and len(x)]
    rows = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (parts[0] if parts else fresh)
    if cache is not None:
        ok = rows[rows["_error"].isna()] if "_error" in rows.columns else rows
        cache.stage(ok.drop(columns=["_error"], errors="ignore"))
    return rows
