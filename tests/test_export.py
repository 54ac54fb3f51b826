"""Export: deterministic tar shards, the dataset manifest and checksums, the refusal gate."""

from __future__ import annotations

import json
import tarfile

import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.stages import export


def test_export_is_deterministic_and_sharded(dataset, tmp_path):
    data, _params, df, _labels = dataset
    p = load_params(None, {"export": {"shard_mb": 0.3}})
    ok = {"success": True, "tables": {}}
    a = tmp_path / "a"
    b = tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "crops").symlink_to(data / "crops")
        (d / "augment").symlink_to(data / "augment")
        _, m = export.run(df, p, data_dir=d, validation=ok)
    sums_a = (a / "dataset" / "SHA256SUMS").read_text()
    assert sums_a == (b / "dataset" / "SHA256SUMS").read_text()
    shards = sorted((a / "dataset" / "shards").glob("*.tar"))
    assert m["shards"] == len(shards) > 3
    assert all(s.stat().st_size < 0.3e6 + 64_000 for s in shards)
    man = pd.read_parquet(a / "dataset" / "manifest.parquet")
    with tarfile.open(a / "dataset" / man.iloc[0]["shard"]) as tar:
        meta = json.loads(tar.extractfile(man.iloc[0]["image_id"] + ".json").read())
    assert meta["label"] == man.iloc[0]["label"] and meta["split"] == man.iloc[0]["split"]
    # the dataset manifest run() returns is the one on disk
    returned, _ = export.run(df, p, data_dir=b, validation=ok)
    assert returned.reset_index(drop=True).equals(
        pd.read_parquet(b / "dataset" / "manifest.parquet").reset_index(drop=True))
    with pytest.raises(export.ExportRefused):
        export.run(df, p, data_dir=a, validation={"success": False})
