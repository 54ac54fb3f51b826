"""pipeline.dataset: what a trainer reads from a pulled version, checked against its manifest."""

from __future__ import annotations

import pytest

from pipeline.core.config import load_params
from pipeline.stages import export
from tests.helpers import needs

needs("tensorflow")


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    data, _params, df, _labels = dataset
    d = tmp_path_factory.mktemp("exp") / "data"
    d.mkdir()
    (d / "crops").symlink_to(data / "crops")
    (d / "augment").symlink_to(data / "augment")
    man, _ = export.run(df, load_params(None, {"export": {"shard_mb": 0.5}}), data_dir=d,
                        validation={"success": True, "tables": {}})
    return d / "dataset", man


def test_every_split_streams_with_its_labels(exported):
    from pipeline import dataset as ds_mod

    d, man = exported
    names = ds_mod.class_names(d)
    assert names == sorted(man["label"].unique())
    for split in ("train", "val", "test"):
        x, y, ids = ds_mod.as_arrays(d, split)
        part = man[man["split"] == split].set_index("image_id")
        assert sorted(ids) == sorted(part.index) and x.shape[1:] == (224, 224, 3)
        assert [names[i] for i in y] == part.loc[ids, "label"].tolist()
    batch = next(iter(ds_mod.load(d, "train", batch_size=8, image_size=64)))
    assert tuple(batch[0].shape) == (8, 64, 64, 3) and batch[0].dtype.name == "uint8"


def test_the_photos_alone_stream_without_their_variants(exported):
    from pipeline import dataset as ds_mod

    d, man = exported
    photos = set(man.loc[man["parent_id"].isna(), "image_id"])
    train = man[man["split"] == "train"]
    assert train["parent_id"].notna().any()  # the fixture has variants to leave out
    ds = ds_mod.load(d, "train", batch_size=7, shuffle=False, with_ids=True, ids=photos)
    got = [v.decode() for _, _, i in ds.as_numpy_iterator() for v in i]
    assert sorted(got) == sorted(set(train["image_id"]) & photos)
    assert int(ds.cardinality()) == -(-len(got) // 7)  # the batches it says it has


def test_a_changed_shard_is_an_error_not_a_wrong_picture(exported, tmp_path):
    import shutil

    from pipeline import dataset as ds_mod

    d, man = exported
    copy = tmp_path / "ds"
    shutil.copytree(d, copy)
    shard = copy / man["shard"].iloc[0]
    raw = bytearray(shard.read_bytes())
    raw[2000] ^= 0xFF  # inside the first member's image bytes
    shard.write_bytes(bytes(raw))
    with pytest.raises(ds_mod.DatasetError, match="bytes differ"):
        list(ds_mod.records(copy, man["split"].iloc[0]))
    with pytest.raises(ds_mod.DatasetError, match="not an exported gemcurate dataset"):
        ds_mod.read_manifest(tmp_path / "nothing")


def test_captions_and_attributes_stream_as_targets_and_sit_in_the_shards(dataset, tmp_path):
    import json
    import tarfile

    from pipeline import dataset as ds_mod

    data, _params, df, _labels = dataset
    df = df.copy()
    # what a gem store shows, under its own field names; one product lacks its origin
    df["attr_color"] = " Deep  Blue"
    df["attr_weight"] = "1.5 ct"
    df["attr_shape"] = "Oval"
    df["attr_origin"] = ["Sri Lanka" if i % 7 else None for i in range(len(df))]
    d = tmp_path / "data"
    d.mkdir()
    (d / "crops").symlink_to(data / "crops")
    (d / "augment").symlink_to(data / "augment")
    man, metrics = export.run(df, load_params(None, {}), data_dir=d,
                              validation={"success": True, "tables": {}})
    out = d / "dataset"
    row = man[man["caption_partial"] == False].iloc[0]  # noqa: E712 (a nullable boolean)
    stone = row["label"]
    assert row["caption_basic"] == f"a {stone}".replace("a a", "an a")
    assert row["caption_complete"].endswith(f"{stone}, oval cut, from sri lanka")
    assert row["caption_complete"].startswith("a 1.50 ct deep blue")
    assert json.loads(row["attributes"]) == {"carat": "1.50", "colour": "deep blue", "cut": "oval",
                                             "origin": "sri lanka", "stone": stone}
    partial = man[man["caption_partial"].fillna(False).astype(bool)]
    assert len(partial) and set(partial["caption_missing"]) == {"origin"}
    assert 0 < metrics["captions_partial"] < 1
    texts = {iid.decode(): cap.decode() for _, cap, iid in ds_mod.load(
        out, "val", batch_size=None, target="caption", with_ids=True).as_numpy_iterator()}
    want = man[man["split"] == "val"].set_index("image_id")["caption_normal"]
    assert texts == want.to_dict()
    batch = next(iter(ds_mod.load(out, "train", batch_size=4, target="caption", caption_level="complete")))
    assert batch[1].dtype.name == "string" and b"ct" in batch[1].numpy()[0]
    attrs = next(iter(ds_mod.load(out, "train", batch_size=None, target="attributes")))
    assert json.loads(attrs[1].numpy())["cut"] == "oval"
    with tarfile.open(out / row["shard"]) as tar:
        names = set(tar.getnames())
        base = row["image_id"]
        assert {f"{base}.txt", f"{base}.basic.txt", f"{base}.complete.txt", f"{base}.json"} <= names
        assert tar.extractfile(f"{base}.txt").read().decode() == row["caption_normal"]
        meta = json.loads(tar.extractfile(f"{base}.json").read())
        assert meta["captions"]["complete"] == row["caption_complete"] and not meta["caption_partial"]
    with pytest.raises(ds_mod.DatasetError, match="target"):
        ds_mod.load(out, "train", target="colour")
