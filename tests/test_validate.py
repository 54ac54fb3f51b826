"""Validate (Great Expectations), export and publish gates: planted defects are named and stop publish."""

from __future__ import annotations

import json

import cv2
import pandas as pd
import pytest

from pipeline.core.config import load_params
from pipeline.stages import export, publish, validate


def check(df, data, params, labels):
    return validate.run(df, params, data_dir=data, labels=labels)[1]


def failed(res) -> set[tuple[str, str, str]]:
    return {(f["table"], f["expectation"], f["kwargs"].get("column", "")) for f in res["failures"]}


def test_stored_suites_equal_the_declarations():
    assert validate.load_suites() == json.loads(json.dumps(validate.build_suites()))


def test_an_older_projects_suite_skips_the_columns_only_raw_keeps(tmp_path, caplog):
    """A project made before the crawl's bookkeeping stayed in the raw manifest still checks
    ``change`` in its dataset suite: those checks are left out, with a warning saying how to
    rewrite the suite; the rest are kept."""
    validate.write_suites(tmp_path)
    suite = json.loads((tmp_path / "dataset.json").read_text())
    old = [{"kwargs": {"column": c}, "meta": {"why": "declared (raw)"}, "type": "expect_column_to_exist"}
           for c in ("change", "first_seen_run", "last_seen_run")]
    (tmp_path / "dataset.json").write_text(json.dumps({**suite, "expectations": old + suite["expectations"]}))
    got = validate.load_suites(tmp_path)
    assert got["dataset"]["expectations"] == suite["expectations"]
    assert "--write-suites" in caplog.text and "change" in caplog.text


def test_a_good_dataset_passes(dataset):
    data, params, df, labels = dataset
    res = check(df, data, params, labels)
    assert res["success"], validate.format_failures(res["failures"])
    assert res["tables"]["dataset"]["expectations"] > 50
    assert res["dataset_images"] == int(df["split"].notna().sum())


def _copy_image(data, rel, new_rel, size=None):
    img = cv2.imread(str(data / rel))
    if size:
        img = cv2.resize(img, (size, size))
    (data / new_rel).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(data / new_rel), img)


def plant(kind: str, df: pd.DataFrame, data) -> pd.DataFrame:
    df = df.copy()
    live = df[df["split"].notna() & df["excluded_reason"].isna()]
    test_rows = live.index[(live["split"] == "test") & live["parent_id"].isna()]
    train_rows = live.index[(live["split"] == "train") & live["parent_id"].isna()]
    if kind == "wrong_size":
        i = test_rows[0]
        _copy_image(data, df.loc[i, "image_path"], "planted/small.png", size=200)
        df.loc[i, "image_path"] = "planted/small.png"
    elif kind == "missing_file":
        df.loc[test_rows[0], "image_path"] = "planted/nowhere.png"
    elif kind == "unknown_label":
        df.loc[test_rows[0], "label"] = "unobtainium"
    elif kind == "leaked_duplicate":
        # a train photo is a near copy of a test photo: same duplicate cluster, two splits
        df.loc[train_rows[0], "dup_cluster"] = df.loc[test_rows[0], "dup_cluster"]
    elif kind == "leaked_product":
        df.loc[train_rows[0], "product_id"] = df.loc[test_rows[0], "product_id"]
    elif kind == "certificate":
        df.loc[test_rows[0], "is_certificate"] = True
    elif kind == "augmented_in_test":
        v = live.index[live["parent_id"].notna()][0]
        df.loc[v, "split"] = "test"
    elif kind == "duplicate_id":
        df.loc[test_rows[1], "image_id"] = df.loc[test_rows[0], "image_id"]
    elif kind == "bad_type":
        df["width"] = df["width"].astype("float64") + 0.5
    return df


EXPECTED = {
    "wrong_size": ("files", "expect_column_values_to_be_between", "width"),
    "missing_file": ("files", "expect_column_values_to_be_in_set", "exists"),
    "unknown_label": ("dataset", "expect_column_values_to_be_in_set", "label"),
    "leaked_duplicate": ("groups", "expect_column_values_to_be_between", "n_splits"),
    "leaked_product": ("groups", "expect_column_values_to_be_between", "n_splits"),
    "certificate": ("dataset", "expect_column_values_to_be_in_set", "is_certificate"),
    "augmented_in_test": ("dataset", "expect_column_values_to_be_null", "parent_id"),
    "duplicate_id": ("dataset", "expect_column_values_to_be_unique", "image_id"),
    "bad_type": ("dataset", "expect_column_values_to_be_of_type", "width"),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_planted_defect_fails_with_a_message_naming_it(dataset, kind):
    data, params, df, labels = dataset
    res = check(plant(kind, df, data), data, params, labels)
    assert not res["success"]
    assert EXPECTED[kind] in failed(res), failed(res)
    text = validate.format_failures(res["failures"])
    table, expectation, column = EXPECTED[kind]
    assert f"[{table}] {expectation}({column})" in text
    # offending rows are shown (a column's type has none: the observed type is)
    assert ("observed float64" if kind == "bad_type" else "e.g.") in text


def test_cli_validate_stops_and_publish_refuses(dataset, tmp_path):
    data, _params, df, labels = dataset
    from pipeline.core.manifest import manifest_path, write_manifest

    d = tmp_path / "data"
    (d / "metrics").mkdir(parents=True)
    pd.DataFrame({"label": labels}).to_csv(d / "metrics" / "split_classes.csv", index=False)
    (d / "crops").symlink_to(data / "crops")
    (d / "augment").symlink_to(data / "augment")
    p = load_params(None, {"augment": {"target_per_class": 40}, "data": {"data_dir": str(d)}})
    write_manifest(plant("augmented_in_test", df, data), manifest_path(d, "augment"))
    with pytest.raises(validate.ValidationFailed, match="augmented variants only in train"):
        validate.main(p)
    result = json.loads((d / "validate" / "result.json").read_text())
    assert result["success"] is False
    assert (d / "validate" / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()
    with pytest.raises(export.ExportRefused):
        export.main(p)
    with pytest.raises(publish.PublishError, match="validation failed"):
        publish.publish(p, root=tmp_path, data_dir="data", require_clean=False)
    # fixed: validation passes, export writes the dataset, its checksums verify
    write_manifest(df, manifest_path(d, "augment"))
    validate.main(p)
    m = export.main(p)
    assert m["images"] == int(df["split"].notna().sum())
    assert publish.verify_dir(d / "dataset", deep=True) == m["images"]


def test_each_run_keeps_the_newest_results_and_drops_what_it_makes_again(tmp_path):
    """Before GX is set up: the stored suites, definitions and checkpoints (made again from
    expectations/*.json) and the rendered result pages go; results beyond the newest
    KEEP_RESULTS per table go, oldest first, so a Data Docs build never grows without end."""
    from pipeline.stages import validate as v

    gx_dir = tmp_path / "gx"
    for d in ("expectations", "validation_definitions", "checkpoints",
              "uncommitted/data_docs/local_site/validations/gemcurate_files"):
        (gx_dir / d).mkdir(parents=True)
    stamps = [f"20261207T1100{k:02d}.000000Z" for k in range(v.KEEP_RESULTS + 5)]
    for table in ("gemcurate_files", "gemcurate_groups"):
        for i, stamp in enumerate(stamps[: v.KEEP_RESULTS + (5 if table == "gemcurate_files" else -3)]):
            run = gx_dir / "uncommitted" / "validations" / table / ("__none__" if i % 2 else "r1") / stamp
            run.mkdir(parents=True)
            (run / "x.json").write_text("{}")
    (gx_dir / "great_expectations.yml").write_text("config_version: 4\n")
    # a planted link to a folder outside: never followed, nothing out there removed
    outside = tmp_path / "outside"
    for stamp in stamps:
        (outside / "run" / stamp).mkdir(parents=True)
    (gx_dir / "uncommitted" / "validations" / "gemcurate_linked").symlink_to(outside)
    (gx_dir / "uncommitted" / "validations" / "gemcurate_groups" / "linked").symlink_to(outside / "run")
    v._drop_derived_definitions(tmp_path)
    assert len(list((outside / "run").iterdir())) == len(stamps)
    for d in ("expectations", "validation_definitions", "checkpoints",
              "uncommitted/data_docs/local_site/validations"):
        assert not (gx_dir / d).exists(), d
    assert (gx_dir / "great_expectations.yml").exists()
    kept = (gx_dir / "uncommitted/validations/gemcurate_files").rglob("x.json")
    files = sorted(p.parent.name for p in kept)
    assert files == stamps[5:]                                     # the newest KEEP_RESULTS
    groups = list((gx_dir / "uncommitted/validations/gemcurate_groups").rglob("x.json"))
    assert len(groups) == v.KEEP_RESULTS - 3                       # fewer: all kept
    v._drop_derived_definitions(tmp_path / "nothing-here")        # a first run: nothing to drop


def test_a_class_that_trains_whole_is_not_asked_for_val_and_test(dataset):
    """A class under ``split.min_heldout_images`` goes to train whole (the split stage): the
    check "every class present in val and test" skips exactly that class."""
    import dataclasses

    data, params, df, labels = dataset
    df = df.copy()
    one = labels[0]
    df.loc[df["label"].eq(one) & df["split"].isin(["val", "test"]), "split"] = "train"
    heldout = ("balance", "expect_column_values_to_be_between", "heldout_images")
    assert heldout in failed(check(df, data, params, labels))
    photos = df[df["split"].notna() & df["parent_id"].isna()]["label"].value_counts()
    small = dataclasses.replace(params, split=dataclasses.replace(
        params.split, min_heldout_images=int(photos[one]) + 1))
    assert heldout not in failed(check(df, data, small, labels))
    # the table leaves exactly that class's held-out counts empty
    table = validate.balance_table(df[df["split"].notna()], params.split.ratios(), 40, 16, {one})
    held = table[table["split"] != "train"]
    assert held.loc[held["label"] == one, "heldout_images"].isna().all()
    assert held.loc[held["label"] != one, "heldout_images"].notna().all()
