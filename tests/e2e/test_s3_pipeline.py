"""Shared storage on S3, end to end against a real S3 server on loopback (moto): the image
store in ``s3://…/store`` and the DVC remote in ``s3://…/dvc``. Scrape into the bucket;
on a machine whose mirror is empty, snapshot refuses a blob altered in the bucket, then
fetches and verifies every blob; curate with ``dvc repro``; publish (``dvc push`` to S3);
with the local DVC cache gone, pull the version back from S3 and verify it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import BIN, GIT_ID, copy_tree, run

pytest.importorskip("s3fs")
pytest.importorskip("dvc_s3")
pytestmark = pytest.mark.slow

sh = run
STORE = ["--seed", "5", "--classes", "3", "--products-per-class", "8", "--rate-limit", "1000",
         "--burst", "200", "--faults", "0"]

def gemcurate(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "pipeline", *args], cwd, check=check)


def test_scrape_into_s3_curate_publish_and_pull_from_s3(tmp_path, storefront, bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    store = storefront(*STORE)
    repo = tmp_path / "repo"
    copy_tree(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["store_root"] = f"s3://{bucket}/store"
    params["scrape"].update(max_rate=500.0, default_rate=500.0, concurrency=8, progress=False,
                            base_url=store.base_url)
    params["augment"]["target_per_class"] = 30
    params["publish"]["remote"] = "s3"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", *GIT_ID, "commit", "-qm", "init"], repo)
    sh([str(BIN / "dvc"), "remote", "add", "-f", "-d", "s3", f"s3://{bucket}/dvc"], repo)
    sh(["git", "add", ".dvc/config"], repo)
    sh(["git", *GIT_ID, "commit", "-qm", "DVC remote on S3"], repo)

    gemcurate("scrape", cwd=repo)
    raw = pd.read_parquet(repo / "data" / "manifests" / "raw.parquet")
    blobs = set(raw["path"].dropna())
    assert len(blobs) > 40
    in_bucket = {k.split("/store/", 1)[1] for k in fs.find(f"{bucket}/store")}
    assert in_bucket == blobs  # every downloaded blob is in the shared store, nothing else

    # another machine: the same project, nothing in its mirror
    shutil.rmtree(repo / "data" / "store")
    victim = sorted(blobs)[0]
    good = fs.cat_file(f"{bucket}/store/{victim}")
    fs.pipe_file(f"{bucket}/store/{victim}", good[: len(good) // 2])
    res = gemcurate("snapshot", cwd=repo, check=False)
    assert res.returncode == 1 and "snapshot refused" in res.stderr and "1 hold other bytes" in res.stderr
    assert not (repo / "data" / "store" / victim).exists()
    fs.pipe_file(f"{bucket}/store/{victim}", good)
    gemcurate("snapshot", cwd=repo)
    assert {str(p.relative_to(repo / "data" / "store")) for p in (repo / "data" / "store").rglob("*.*")
            } == blobs

    out = sh([str(BIN / "dvc"), "repro", "export"], repo).stdout
    assert set(re.findall(r"Running stage '(\w+)'", out)) >= {"dedupe", "filter", "crop", "split",
                                                             "augment", "validate", "export"}
    res = gemcurate("publish", cwd=repo)
    tag = re.search(r"published (dataset/v[\d.]+)", res.stdout).group(1)
    assert "pushed to the DVC remote" in res.stdout
    assert fs.find(f"{bucket}/dvc")  # the version's data is in the bucket

    # the version comes back from S3 alone: no local DVC cache, no workspace data
    shutil.rmtree(repo / ".dvc" / "cache")
    ds_local = pd.read_parquet(repo / "data" / "dataset" / "manifest.parquet")
    res = gemcurate("pull", "--version", tag.removeprefix("dataset/v"), "--out", str(tmp_path / "pulled"),
                    "--repo", str(repo), cwd=tmp_path)
    assert f"{len(ds_local):,} images, checksums verified" in res.stdout
    pulled = pd.read_parquet(tmp_path / "pulled" / "manifest.parquet")
    assert sorted(pulled["sha256"]) == sorted(ds_local["sha256"])
