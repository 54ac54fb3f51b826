"""Per-image results of a stage, reused on the next run while nothing that shapes them changed.

A refresh adds a few images to a catalog of thousands; scoring or cropping every
image again would make it cost as much as the first run. The filter and crop
stages therefore keep their per-image rows in ``<data_dir>/<stage>/results.parquet``
with a *key*: the stage's params (less the runtime-only fields) and a hash of the
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

def params_key(params: object) -> dict:
    """A params section's fields as JSON-able values, without the runtime-only ones (the
    fields marked ``RUNTIME`` in ``pipeline/core/config.py``: workers, progress …)."""
    if not dataclasses.is_dataclass(params):
        return dict(params)  # type: ignore[call-overload]
    d = dataclasses.asdict(params)
    runtime = {f.name for f in dataclasses.fields(params) if f.metadata.get("outputs", True) is False}
    return {k: v for k, v in d.items() if k not in runtime}


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

    def _read(self, rows_path: Path, key_path: Path) -> pd.DataFrame | None:
        if not rows_path.exists() or not key_path.exists():
            return None
        try:
            key = json.loads(key_path.read_text())
            if key != json.loads(json.dumps(self.key, default=str)):
                logger.info("%s: params or code changed: recomputing every image", rows_path.name)
                return None
            rows = pd.read_parquet(rows_path)
        except (OSError, ValueError) as exc:  # a damaged cache costs time, never results
            logger.warning("%s: ignoring unreadable cache (%s)", rows_path, exc)
            return None
        return rows if "image_id" in rows.columns else None

    def shard_paths(self, shard: int, shards: int) -> tuple[Path, Path]:
        return (self.folder / "shards" / f"{shard}-of-{shards}.parquet",
                self.folder / "shards" / f"{shard}-of-{shards}.key.json")

    def load(self) -> pd.DataFrame | None:
        """The cached rows, or None when absent, unreadable or made under another key.

        Rows computed by ``--shard i/n`` runs (``shards/``) under the same key count too.
        """
        parts = [self._read(self.rows_path, self.key_path)]
        for rows_path in sorted((self.folder / "shards").glob("*-of-*.parquet")):
            parts.append(self._read(rows_path, rows_path.with_name(rows_path.stem + ".key.json")))
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return pd.concat(parts, ignore_index=True).drop_duplicates("image_id")

    def write(self, rows: pd.DataFrame) -> None:
        """Write ``rows`` (one per image_id) with their key (``main()`` calls :meth:`save`).

        The shard files it has merged are removed afterwards: ``results.parquet`` holds them.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key_path.unlink(missing_ok=True)  # rows without their key are never trusted
        with atomic_path(self.rows_path) as tmp:
            rows.reset_index(drop=True).to_parquet(tmp, index=False)
        write_text(self.key_path, json.dumps(self.key, indent=2, sort_keys=True, default=str))
        for f in (self.folder / "shards").glob("*-of-*"):
            f.unlink(missing_ok=True)

    def stages_new_rows(self) -> bool:
        """Whether what :meth:`stage` was given holds an image the cache does not."""
        if self._pending is None or not len(self._pending[0]):
            return False
        have = self.load()
        return have is None or not self._pending[0]["image_id"].isin(have["image_id"]).all()

    def discard(self) -> int:
        """Forget what :meth:`stage` was given, writing nothing; 0 (rows written)."""
        self._pending = None
        return 0

    def write_shard(self, shard: int, shards: int) -> int:
        """Write what :meth:`stage` was given as shard ``shard`` of ``shards``; the row count."""
        if self._pending is None:
            return 0
        (rows,) = self._pending
        self._pending = None
        rows_path, key_path = self.shard_paths(shard, shards)
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        key_path.unlink(missing_ok=True)
        with atomic_path(rows_path) as tmp:
            rows.reset_index(drop=True).to_parquet(tmp, index=False)
        write_text(key_path, json.dumps(self.key, indent=2, sort_keys=True, default=str))
        return len(rows)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n <= 1024``.

    Raises:
        ValueError: Not of that form.
    """
    import re

    m = re.fullmatch(r"(\d{1,4})/(\d{1,4})", text.strip())
    if not m or not (0 <= int(m.group(1)) < int(m.group(2)) <= 1024):
        raise ValueError(f"--shard {text!r}: give i/n with 0 <= i < n <= 1024 (e.g. 0/4)")
    return int(m.group(1)), int(m.group(2))


def in_shard(image_ids: pd.Series, shard: int, shards: int) -> pd.Series:
    """Which images belong to shard ``shard`` of ``shards`` (by the content hash: stable, even)."""
    return image_ids.astype(str).str[:8].map(lambda h: int(h, 16) % shards == shard).astype(bool)


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


def compute_shard(cache: ResultCache, df: pd.DataFrame, shard: tuple[int, int], compute) -> dict:
    """Run ``compute(rows of this shard)`` (a stage's ``run``, returning its metrics) and write
    what it staged in ``cache`` as shard ``shard``: the body of every ``--shard`` run."""
    metrics = compute(df[in_shard(df["image_id"], *shard)])
    computed = metrics.get("images_scored", metrics.get("images", 0) - metrics.get("images_reused", 0))
    # nothing new to keep (a refresh of an unchanged store; a broken file, retried, is never
    # kept): no file, so the stage's cache folder, a DVC output, stays as it was and `dvc
    # repro` has no reason to run the stage again
    rows = cache.write_shard(*shard) if cache.stages_new_rows() else cache.discard()
    logger.info("%s shard %d/%d: %d images", cache.folder.name, shard[0], shard[1], rows)
    return {"shard": f"{shard[0]}/{shard[1]}", "images": rows, "computed": computed}
