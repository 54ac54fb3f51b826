"""pipeline.dataset: what a trainer reads from a pulled version, checked against its manifest."""

from __future__ import annotations

import pytest

from pipeline.core.config import load_params
from pipeline.stages import export

pytest.importorskip("tensorflow")


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
