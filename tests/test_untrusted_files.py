"""Files a stage reads are input too: crafted manifests cannot choose paths, and an image
store that lost or changed files stops the stage instead of shrinking the dataset."""

from __future__ import annotations

import os

import pytest

from pipeline.core.blobstore import StoreDamaged
from pipeline.core.manifest import ManifestError, manifest_path, read_manifest, write_manifest
from pipeline.stages import crop, dedupe, labels
from pipeline.stages import filter as filt
from pipeline.stages.scrape import scrape
from tests.hostile import Hostile


@pytest.fixture
def scraped(params_for):
    params = params_for(max_rate=200.0, default_rate=200.0)
    with Hostile() as store:
        assert scrape(params, base_url=store.base_url).status == "complete"
        yield params, store


def _tamper(params, stage: str, col: str, value: str) -> None:
    path = manifest_path(params.data.data_dir, stage)
    df = read_manifest(path)
    df.loc[0, col] = value
    write_manifest(df, path)  # written as an attacker would: without the stage's checks


def test_a_row_whose_path_leaves_the_image_store_is_refused(scraped, tmp_path):
    params, _ = scraped
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((tmp_path / "data" / "store" / read_manifest(
        manifest_path(params.data.data_dir, "raw")).loc[0, "path"]).read_bytes())
    _tamper(params, "raw", "path", "../../outside.jpg")
    with pytest.raises(ManifestError, match="column path: row 0"):
        dedupe.main(params, progress=False)
    _tamper(params, "raw", "path", str(outside))  # absolute
    with pytest.raises(ManifestError, match="column path: row 0"):
        dedupe.main(params, progress=False)


def test_a_row_whose_image_id_is_a_path_writes_nothing_outside(scraped, tmp_path):
    params, _ = scraped
    dedupe.main(params, progress=False)
    filt.main(params, progress=False)
    labels.main(params, progress=False)
    target = tmp_path / "any" / "dir" / "x"
    _tamper(params, "labels", "image_id", f"/../../../../{target}")
    with pytest.raises(ManifestError, match="column image_id"):
        crop.main(params, progress=False)
    assert not target.with_suffix(".png").exists() and not (tmp_path / "any").exists()


def test_a_deleted_blob_stops_dedupe_and_a_scrape_fetches_it_again(scraped):
    params, store = scraped
    raw = read_manifest(manifest_path(params.data.data_dir, "raw"))
    gone = f"{params.data.data_dir}/store/{raw['path'].dropna().iloc[0]}"
    os.unlink(gone)
    with pytest.raises(StoreDamaged, match="missing from the image store") as exc:
        dedupe.main(params, progress=False)
    assert "gemcurate scrape" in str(exc.value)
    assert scrape(params, base_url=store.base_url).status == "complete"
    assert os.path.exists(gone)
    m = dedupe.main(params, progress=False)
    assert m["undecodable"] == 0


def test_other_bytes_under_an_image_id_never_enter_the_dataset(scraped):
    params, _ = scraped
    dedupe.main(params, progress=False)
    filt.main(params, progress=False)
    labels.main(params, progress=False)
    f = read_manifest(manifest_path(params.data.data_dir, "labels"))
    a, b = f["path"].dropna().iloc[0], f["path"].dropna().iloc[1]
    store = f"{params.data.data_dir}/store"
    with open(f"{store}/{b}", "rb") as src:
        other = src.read()
    with open(f"{store}/{a}", "wb") as dst:   # a swapped file, as a damaged disk or a person does
        dst.write(other)
    with pytest.raises(StoreDamaged, match="holds other bytes than image"):
        crop.main(params, progress=False)


@pytest.mark.parametrize("damage", ["replaced", "html", "truncated", "deleted"])
def test_damage_is_found_whatever_the_caches_hold(scraped, damage):
    """With every per-image cache warm (fingerprints, embeddings, scores, crops), a blob
    that was replaced, truncated or deleted stops each stage that reads the store, naming
    it: cached rows were once trusted without a look at the bytes."""
    from pipeline.core import blobcheck

    params, _ = scraped
    d = params.data.data_dir
    for stage in (dedupe, filt, labels, crop):
        stage.main(params, progress=False)
    assert blobcheck.record_path(d).exists()
    f = read_manifest(manifest_path(d, "crop"))
    rel = f.loc[f["excluded_reason"].isna(), "path"].iloc[0]
    blob = f"{d}/store/{rel}"
    stat = os.stat(blob)
    if damage == "replaced":    # other bytes of the same size, the old mtime put back
        size = os.path.getsize(blob)
        with open(blob, "r+b") as fh:
            data = bytearray(fh.read())
            data[size // 2] ^= 0xFF
            fh.seek(0)
            fh.write(data)
        os.utime(blob, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif damage == "html":
        with open(blob, "wb") as fh:
            fh.write(b"<html><body>Access denied</body></html>")
    elif damage == "truncated":
        os.truncate(blob, stat.st_size // 2)
    else:
        os.unlink(blob)
    for stage in (dedupe, filt, crop):
        with pytest.raises(StoreDamaged, match="missing from the image store" if damage == "deleted"
                           else "holds other bytes than image") as exc:
            stage.main(params, progress=False)
        assert rel in str(exc.value) and "dvc checkout data/store" in str(exc.value)


def test_a_full_verify_hashes_every_blob_and_a_normal_run_trusts_its_record(scraped):
    from pipeline.core import blobcheck
    from pipeline.core.stageio import StageIO

    params, _ = scraped
    io = StageIO.of(params)
    raw = io.read("raw")
    n = int(raw["path"].notna().sum())
    first = blobcheck.verify(io.store_root, raw, io.data_dir)
    assert first == {"blobs": n, "hashed": n, "trusted": 0}
    assert blobcheck.verify(io.store_root, raw, io.data_dir) == {"blobs": n, "hashed": 0, "trusted": n}
    assert blobcheck.verify(io.store_root, raw, io.data_dir, full=True)["hashed"] == n
    blobcheck.record_path(io.data_dir).write_bytes(b"garbage")   # a damaged record: hashed again
    assert blobcheck.verify(io.store_root, raw, io.data_dir)["hashed"] == n


def test_damaged_files_of_a_data_dir_get_a_clear_answer(scraped, tmp_path):
    """Caches are rebuilt; memory (the split ledger) and gates (validation) are not guessed."""
    from pipeline.core.validation import ValidationFailed, passed_result
    from pipeline.stages import split, validate

    params, _ = scraped
    d = tmp_path / "data"
    m1 = dedupe.main(params, progress=False)
    (d / "dedupe" / "index.json").write_text("{not json")
    m2 = dedupe.main(params, progress=False)                       # a damaged cache: recomputed
    assert m2["fingerprinted"] == m1["fingerprinted"] > 0
    (d / "dedupe" / "hashes.parquet").write_bytes(b"garbage")
    assert dedupe.main(params, progress=False)["fingerprinted"] == m1["fingerprinted"]

    (d / "split").mkdir()
    import json

    (d / "split" / "ledger.json").write_text(json.dumps({"seed": params.split.seed,
                                                         "ratios": params.split.ratios()}))
    (d / "split" / "ledger.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(split.LedgerDamaged, match="dvc checkout data/split"):
        split.Ledger(d).load(params.split)

    (d / "validate").mkdir()
    (d / "validate" / "result.json").write_text("[1, 2")
    with pytest.raises(ValidationFailed, match="unreadable"):
        passed_result(d)
    bad = tmp_path / "suites"
    bad.mkdir()
    for t in validate.TABLES:
        (bad / f"{t}.json").write_text('{"name": "x"}')
    with pytest.raises(ValidationFailed, match="not a readable suite"):
        validate.load_suites(bad)

    raw = manifest_path(d, "raw")
    raw.write_bytes(b"PAR1 not really")
    with pytest.raises(ManifestError, match="not a readable parquet file"):
        dedupe.main(params, progress=False)
    import pandas as pd

    write_manifest(pd.DataFrame({"image_id": ["a" * 64]}), raw)
    with pytest.raises(ManifestError, match="lacks column"):
        dedupe.main(params, progress=False)


def test_gemcurate_verify_names_each_damaged_blob_and_a_modified_shard(scraped, dataset, tmp_path, capsys):
    """`gemcurate verify` checks a whole data folder in full: a replaced, a truncated and a
    deleted blob, and a dataset shard changed after export, are each named."""
    import yaml

    from pipeline.core.config import load_params
    from pipeline.interfaces.cli import main
    from pipeline.stages import export

    _params, _ = scraped
    d = tmp_path / "data"
    data, _p, df, _labels = dataset
    for sub in ("crops", "augment"):
        (d / sub).symlink_to(data / sub)
    export.run(df, load_params(None), data_dir=d, validation={"success": True, "tables": {}})
    conf = tmp_path / "params.yaml"
    conf.write_text(yaml.safe_dump({"data": {"data_dir": str(d)}}))
    assert main(["verify", "--params", str(conf), "--no-progress"]) == 0
    assert "ok: nothing damaged" in capsys.readouterr().out

    raw = read_manifest(manifest_path(d, "raw"))
    paths = list(raw["path"].dropna())
    with open(d / "store" / paths[0], "wb") as fh:
        fh.write(b"<html>not an image</html>")
    os.truncate(d / "store" / paths[1], 100)
    os.unlink(d / "store" / paths[2])
    shard = sorted((d / "dataset" / "shards").glob("*.tar"))[0]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["verify", "--params", str(conf), "--no-progress"]) == 1
    out = capsys.readouterr().out
    damaged = [line for line in out.splitlines() if line.startswith("DAMAGED")]
    assert len(damaged) == 4, out
    assert paths[0] in out and paths[1] in out and paths[2] in out and shard.name in out
    assert "missing from the image store" in out and out.count("holds other bytes") == 2
