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
