"""Where a stage reads and writes: one place for the paths and the output contract.

Every stage has the same shape: a pure-ish ``run(manifest, params, **injected) ->
(DataFrame, metrics)`` that computes (per-image files such as crops go to a folder
it is given), and a thin ``main()`` (:func:`pipeline.core.stagerun.stage`) that reads its
input through :class:`StageIO`, injects caches, and writes the manifest, the metrics and
the caches through :meth:`StageIO.write`.

Example:
    >>> io = StageIO.of(params)
    >>> cache = ResultCache(io.data_dir / "filter", params.filter, CODE)
    >>> out, metrics = run(io.read("dedupe"), params, store_root=io.store_root, cache=cache)
    >>> io.write("filter", out, metrics, cache)   # conform, atomic parquet, metrics, cache
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from pipeline.core import decisions, manifest
from pipeline.core.atomic import write_text
from pipeline.core.blobstore import BlobStore, MirroredStore
from pipeline.core.config import Params


class Saves(Protocol):
    """State a stage's ``run()`` updated in memory (a cache, a ledger), written by ``main()``."""

    def save(self) -> None: ...


class Staged:
    """Base of a cache or ledger: ``run()`` calls :meth:`stage`, ``main()`` :meth:`save`.

    Subclasses implement :meth:`write` with the arguments :meth:`stage` was given.
    """

    _pending: tuple | None = None

    def stage(self, *what: object) -> None:
        """Keep ``what`` until :meth:`save` (the last call wins)."""
        self._pending = what

    def save(self) -> None:
        """Write what :meth:`stage` was given (nothing when it was not called)."""
        if self._pending is not None:
            self.write(*self._pending)
            self._pending = None

    def write(self, *what: object) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class StageIO:
    """Resolved locations of one run's data."""

    data_dir: Path
    store_root: Path  # always a local folder: the store, or this machine's mirror of a bucket
    review_db: str | None
    store_url: str | None = None  # s3://... when the store is shared in object storage

    @classmethod
    def of(cls, params: Params, data_dir: str | Path | None = None) -> StageIO:
        d = Path(data_dir or params.data.data_dir)
        root = params.data.store_root
        if root and "://" in root:
            return cls(d, d / "store", params.data.review_db, root)
        return cls(d, Path(root or d / "store"), params.data.review_db)

    def store(self) -> BlobStore:
        """The image store (for a bucket: a :class:`MirroredStore` on :attr:`store_root`)."""
        if self.store_url:
            return MirroredStore(self.store_url, self.store_root)
        return BlobStore(self.store_root)

    def images(self, df: pd.DataFrame, full: bool = False) -> Path:
        """:attr:`store_root`, holding every blob ``df['path']`` names, each checked.

        For a bucket, first fetches what this machine's mirror lacks (verified). Then every
        blob is checked against its name before a stage trusts a cached row of it
        (:func:`pipeline.core.blobcheck.verify`: its recorded ``stat``, or its hash; with
        ``full`` or ``GEMCURATE_VERIFY=full`` always its hash).

        Raises:
            StoreDamaged: A blob is missing or holds other bytes, naming it and the fix.
        """
        import os

        from pipeline.core import blobcheck

        if self.store_url and "path" in df.columns and len(df):
            self.store().fetch(df["path"].dropna())
        full = full or os.environ.get("GEMCURATE_VERIFY", "") == "full"
        blobcheck.verify(self.store_root, df, self.data_dir, full=full)
        return self.store_root

    def read(self, stage: str) -> pd.DataFrame:
        """The manifest written by ``stage``, its ids and paths checked (a file on disk is input)."""
        path = manifest.manifest_path(self.data_dir, stage)
        df = manifest.read_manifest(path)
        missing = [c for c in manifest.required_columns(stage) if c not in df.columns]
        if missing:
            raise manifest.ManifestError(f"{path} lacks column(s) {', '.join(missing[:8])}: not a "
                                         f"{stage} manifest (rerun `gemcurate {stage}`)")
        manifest.check_identity(df)
        return df

    def decisions(self) -> pd.DataFrame:
        """Annotator decisions in force."""
        return decisions.load_latest(self.review_db, self.data_dir)

    def write_metrics(self, stage: str, metrics: dict) -> None:
        """``metrics/<stage>.json``, atomically."""
        write_text(self.data_dir / "metrics" / f"{stage}.json", json.dumps(metrics, indent=2) + "\n")

    def write(self, stage: str, df: pd.DataFrame, metrics: dict, *state: Saves) -> pd.DataFrame:
        """Conform ``df`` to ``stage``'s contract, write it, ``metrics/<stage>.json`` and ``state``.

        The manifest goes first: a process killed after it left at worst a cache behind
        the manifest, which costs the next run time, never a result.
        """
        out = manifest.conform(df, stage)
        manifest.write_manifest(out, manifest.manifest_path(self.data_dir, stage))
        self.write_metrics(stage, metrics)
        for s in state:
            s.save()
        return out
