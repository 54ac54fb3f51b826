"""The one stage runner: lock, read, progress, write in order, summary, shards."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from pipeline.core import manifest
from pipeline.core.lock import DataDirBusy, data_dir_lock
from pipeline.core.stagerun import StageResult, StageRun, stage
from tests.helpers import crop_manifest, params


class Ledger:
    def __init__(self, log: list) -> None:
        self.log = log

    def save(self) -> None:
        self.log.append("state")


def test_the_runner_reads_runs_and_writes_manifest_then_metrics_then_state(tmp_path, caplog):
    data = tmp_path / "data"
    df = crop_manifest(data, classes=2, products=3, per_product=1)
    manifest.write_manifest(manifest.conform(df, "crop"), manifest.manifest_path(data, "crop"))
    order: list[str] = []
    seen: dict = {}

    @stage("split", reads="crop")
    def main(ctx: StageRun, got: pd.DataFrame, reset: bool = False) -> StageResult:
        """A split that puts everything in train."""
        seen.update(progress=ctx.progress, rows=len(got), reset=reset, name=ctx.name)
        # the lock is held while the body runs
        with pytest.raises(DataDirBusy), data_dir_lock(data, "another"):
            pass
        out = got.assign(split="train", split_group=got["product_id"], image_path="crops/" + got["crop_path"])

        def after(written: pd.DataFrame) -> None:
            order.append("then")
            seen["written_columns"] = list(written.columns)
            assert manifest.manifest_path(data, "split").exists()

        return StageResult({"images": len(out), "per_class": {}}, out, state=(Ledger(order),),
                           then=(after,), returned={"images": len(out)}, summary="split: all train")

    p = params(data)
    with caplog.at_level(logging.INFO, logger="pipeline.stages.split"):
        got = main(p, reset=True)
    assert got == {"images": 6}
    assert seen == {**seen, "progress": False, "rows": 6, "reset": True, "name": "split"}
    assert order == ["state", "then"]  # the manifest first, its cache after, hooks last
    written = manifest.read_manifest(manifest.manifest_path(data, "split"))
    assert set(written["split"]) == {"train"}
    assert seen["written_columns"] == list(written.columns)
    assert json.loads((data / "metrics" / "split.json").read_text()) == {"images": 6, "per_class": {}}
    assert "split: all train" in caplog.text
    assert main.__doc__ == "A split that puts everything in train."
    # the progress argument wins over the params; a section without one shows none
    main(p, progress=True)
    assert seen["progress"] is True


def test_a_stage_with_a_progress_param_uses_it_and_a_shard_goes_to_its_own_function(tmp_path):
    calls: list = []

    def per_shard(params, shard, data_dir, progress):
        """Only the share."""
        calls.append((shard, progress))
        return {"shard": shard}

    @stage("crop", per_shard=per_shard)
    def main(ctx: StageRun, _: None) -> StageResult:
        calls.append(ctx.progress)
        return StageResult({"ok": 1}, write_metrics=False)

    p = params(tmp_path / "data", crop={"progress": True})
    assert main(p) == {"ok": 1} and calls == [True]
    assert not (tmp_path / "data" / "metrics" / "crop.json").exists()
    assert main(p, shard=(1, 3), progress=False) == {"shard": (1, 3)}
    assert calls[-1] == ((1, 3), False)
    assert "Only the share." in main.__doc__


def test_a_missing_input_manifest_is_a_clear_error_and_writes_nothing(tmp_path):
    @stage("augment", reads="split")
    def main(ctx: StageRun, df: pd.DataFrame) -> StageResult:  # pragma: no cover - never runs
        raise AssertionError("the body must not run without its input")

    with pytest.raises((FileNotFoundError, manifest.ManifestError, OSError)) as exc:
        main(params(tmp_path / "data"))
    assert "split" in str(exc.value)
    assert not (tmp_path / "data" / "metrics").exists()
