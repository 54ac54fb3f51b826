"""Per-image result caches and the shard files of `--shard i/n` runs."""


def test_shard_files_merge_and_broken_or_foreign_ones_are_ignored(tmp_path):
    import pandas as pd
    import pytest

    from pipeline.core.resultcache import ResultCache, in_shard, parse_shard

    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "1/0", "0/99999", "../1"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    ids = pd.Series([f"{i:08x}" + "0" * 56 for i in range(40)])
    a, b = in_shard(ids, 0, 2), in_shard(ids, 1, 2)
    assert (a ^ b).all() and a.any() and b.any()            # every image in exactly one shard

    cache = ResultCache(tmp_path / "filter", {"threshold": 0.5}, [__file__])
    for i, part in enumerate((ids[a], ids[b])):
        cache.stage(pd.DataFrame({"image_id": part, "score": 1.0}))
        assert cache.write_shard(i, 2) == len(part)
    assert set(cache.load()["image_id"]) == set(ids)
    # a truncated shard file costs its rows, never the others
    rows1, _ = cache.shard_paths(1, 2)
    rows1.write_bytes(rows1.read_bytes()[:20])
    assert set(cache.load()["image_id"]) == set(ids[a])
    # rows made under other params are not reused
    other = ResultCache(tmp_path / "filter", {"threshold": 0.9}, [__file__])
    assert other.load() is None
    # the full run's write absorbs and removes the shard files
    cache.stage(pd.DataFrame({"image_id": ids, "score": 1.0}))
    cache.save()
    assert not list((tmp_path / "filter" / "shards").iterdir())


def test_a_shard_run_with_nothing_new_writes_no_file(tmp_path):
    """A refresh of an unchanged store: the shard computes nothing, so the cache folder (a DVC
    output of its stage) is left byte for byte, and `dvc repro` does not run the stage again."""
    import pandas as pd

    from pipeline.core.resultcache import ResultCache, compute_shard

    ids = pd.Series([f"{i:08x}" + "0" * 56 for i in range(10)])
    cache = ResultCache(tmp_path / "filter", {"threshold": 0.5}, [__file__])

    def compute(rows, broken=0):  # a stage's run: every row staged but the broken ones
        cache.stage(pd.DataFrame({"image_id": rows["image_id"].iloc[broken:], "score": 1.0}))
        return {"images": len(rows), "images_reused": len(rows) - broken}

    df = pd.DataFrame({"image_id": ids})
    first = compute_shard(cache, df, (0, 2), compute)
    assert first["images"] > 0
    cache.stage(pd.DataFrame({"image_id": ids, "score": 1.0}))
    cache.save()  # the full run keeps every image
    folder = tmp_path / "filter"
    before = {f.relative_to(folder): f.read_bytes() for f in folder.rglob("*") if f.is_file()}
    for k in (0, 1):  # everything known; one file in each shard broken, tried again, not kept
        again = compute_shard(cache, df, (k, 2), lambda r: compute(r, broken=1))
        assert again["images"] == 0 and again["computed"] == 1
    assert {f.relative_to(folder): f.read_bytes() for f in folder.rglob("*") if f.is_file()} == before
