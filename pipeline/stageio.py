"""Where a curation stage reads and writes: one place for the paths and the output contract.

Example:
    >>> io = StageIO.of(params)
    >>> out, metrics = run(io.read("dedupe"), ...)
    >>> io.write("filter", out, metrics)   # conform, atomic parquet, metrics/filter.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import decisions, manifest
from pipeline.atomic import write_text
from pipeline.config import Params


@dataclass(frozen=True)
class StageIO:
    """Resolved locations of one run's data."""

    data_dir: Path
    store_root: Path
    review_db: str | None

    @classmethod
    def of(cls, params: Params, data_dir: str | Path | None = None) -> StageIO:
        d = Path(data_dir or params.data.data_dir)
        return cls(d, Path(params.data.store_root or d / "store"), params.data.review_db)

    def read(self, stage: str) -> pd.DataFrame:
        """The manifest written by ``stage``."""
        return manifest.read_manifest(manifest.manifest_path(self.data_dir, stage))

    def decisions(self) -> pd.DataFrame:
        """Annotator decisions in force."""
        return decisions.load_latest(self.review_db, self.data_dir)

    def write(self, stage: str, df: pd.DataFrame, metrics: dict) -> pd.DataFrame:
        """Conform ``df`` to ``stage``'s contract, write it and ``metrics/<stage>.json`` atomically."""
        out = manifest.conform(df, stage)
        manifest.write_manifest(out, manifest.manifest_path(self.data_dir, stage))
        write_text(self.data_dir / "metrics" / f"{stage}.json", json.dumps(metrics, indent=2) + "\n")
        return out
