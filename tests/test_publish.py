"""Publish and pull without DVC end to end (that is tests/e2e/test_dvc_pipeline.py): the
checksum verification, tag numbering and the refusals."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from pipeline.core.config import load_params
from pipeline.stages import export, publish


@pytest.fixture
def exported(dataset, tmp_path):
    data, _params, df, _labels = dataset
    d = tmp_path / "data"
    d.mkdir()
    (d / "crops").symlink_to(data / "crops")
    (d / "augment").symlink_to(data / "augment")
    _, m = export.run(df, load_params(None), data_dir=d, validation={"success": True, "tables": {}})
    return d / "dataset", m


def test_verify_dir_counts_every_image_and_catches_any_change(exported):
    ds, m = exported
    assert publish.verify_dir(ds, deep=True) == m["images"]
    shard = sorted((ds / "shards").glob("*.tar"))[0]
    raw = bytearray(shard.read_bytes())
    raw[1000] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(publish.PublishError, match="checksum differs"):
        publish.verify_dir(ds, deep=False)
    shard.unlink()
    with pytest.raises(publish.PublishError, match="missing"):
        publish.verify_dir(ds, deep=False)


def test_a_folder_without_checksums_is_not_a_dataset(tmp_path):
    with pytest.raises(publish.PublishError, match="not an exported gemcurate dataset"):
        publish.verify_dir(tmp_path)


def test_tags_count_up_within_a_day(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    day = dt.date(2026, 1, 2)
    assert publish.next_tag(tmp_path, "dataset/v", day) == "dataset/v2026.01.02"
    for t in ("dataset/v2026.01.02", "dataset/v2026.01.02.2"):
        subprocess.run(["git", "tag", t], cwd=tmp_path, check=True)
    assert publish.next_tag(tmp_path, "dataset/v", day) == "dataset/v2026.01.02.3"


def test_publish_refuses_without_a_passed_validation_and_snapshot_without_a_scrape(tmp_path):
    params = load_params(None, {"data": {"data_dir": str(tmp_path / "data")}})
    with pytest.raises(publish.PublishError, match="no validation result"):
        publish.publish(params, root=tmp_path, data_dir="data", require_clean=False)
    with pytest.raises(publish.PublishError, match="scrape first"):
        publish.snapshot(tmp_path, "data")


def test_pull_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(publish.PublishError, match="not empty"):
        publish.pull("2026.01.02", tmp_path / "out", repo=str(tmp_path))
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
