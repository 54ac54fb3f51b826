"""Files a stage reads are input too: crafted manifests cannot choose paths, and an image
store that lost or changed files stops the stage instead of shrinking the dataset."""

from __future__ import annotations

import os

import pytest

from pipeline import crop, dedupe
from pipeline import filter as filt
from pipeline.core.blobstore import StoreDamaged
from pipeline.manifest import ManifestError, manifest_path, read_manifest, write_manifest
from pipeline.scrape import scrape
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
    target = tmp_path / "any" / "dir" / "x"
    _tamper(params, "filter", "image_id", f"/../../../../{target}")
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
    f = read_manifest(manifest_path(params.data.data_dir, "filter"))
    a, b = f["path"].dropna().iloc[0], f["path"].dropna().iloc[1]
    store = f"{params.data.data_dir}/store"
    with open(f"{store}/{b}", "rb") as src:
        other = src.read()
    with open(f"{store}/{a}", "wb") as dst:   # a swapped file, as a damaged disk or a person does
        dst.write(other)
    with pytest.raises(StoreDamaged, match="holds other bytes than image"):
        crop.main(params, progress=False)


def test_damaged_files_of_a_data_dir_get_a_clear_answer(scraped, tmp_path):
    """Caches are rebuilt; memory (the split ledger) and gates (validation) are not guessed."""
    from pipeline import split, validate
    from pipeline.core.validation import ValidationFailed, passed_result

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
