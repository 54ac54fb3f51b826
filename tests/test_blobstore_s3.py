"""The image store shared in object storage: ``data.store_root: s3://bucket/prefix``, against
a real S3 server on loopback (moto). A scrape writes each blob to the bucket and the mirror;
a stage on a machine whose mirror is empty fetches what its manifest lists, verified against
the sha256 in each name; a blob altered in the bucket is never used."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.blobstore import (
    BlobStore,
    MirroredStore,
    StoreDamaged,
    StoreUnavailable,
    open_store,
    parse_store_url,
    relpath_for,
    sha256_hex,
    sha_of_relpath,
)
from pipeline.core.config import ConfigError, load_params
from pipeline.core.stageio import StageIO
from pipeline.stages import dedupe
from tests.helpers import encode, gem_photo, photo_bytes, raw_manifest

pytest.importorskip("s3fs")


def s3fs_client():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


@pytest.mark.parametrize("url,bucket,prefix", [
    ("s3://gems/store", "gems", "store"),
    ("s3://gems", "gems", ""),
    ("s3://my.gems-1/a/b_c/", "my.gems-1", "a/b_c"),
])
def test_store_urls_parse(url, bucket, prefix):
    u = parse_store_url(url)
    assert (u.bucket, u.prefix) == (bucket, prefix)
    assert u.key("ab/cd/x.jpg") == "/".join(p for p in (bucket, prefix, "ab/cd/x.jpg") if p)


@pytest.mark.parametrize("url", ["http://127.0.0.1/store", "gs://gems/x", "s3://Gems/x", "s3://g/x",
                                 "s3://gems/../etc", "s3://gems/a?versionId=1", "s3://gems/a b",
                                 "s3:///store"])
def test_bad_store_urls_are_refused_at_load_naming_the_key(url):
    with pytest.raises(ConfigError, match=r"data\.store_root"):
        load_params(None, {"data": {"store_root": url}})


def test_only_store_paths_reach_the_bucket():
    sha = "ab" + "cd" + "0" * 60
    assert sha_of_relpath(f"ab/cd/{sha}.jpg") == sha
    for bad in ("../../etc/passwd", f"ab/ce/{sha}.jpg", f"/ab/cd/{sha}.jpg", f"ab/cd/{sha}.jpg/.."):
        with pytest.raises(ValueError):
            sha_of_relpath(bad)


def test_open_store_picks_the_kind(tmp_path, s3_server):
    assert type(open_store(None, tmp_path)) is BlobStore
    assert open_store(None, tmp_path).root == tmp_path / "store"
    assert type(open_store(tmp_path / "elsewhere", tmp_path)) is BlobStore
    shared = open_store("s3://somewhere/store", tmp_path)
    assert isinstance(shared, MirroredStore) and shared.root == tmp_path / "store"


def test_a_put_lands_in_the_bucket_and_another_machine_fetches_it_verified(tmp_path, bucket):
    url = f"s3://{bucket}/store"
    a = MirroredStore(url, tmp_path / "a", fs=s3fs_client())
    blobs = [photo_bytes(k) for k in range(3)]
    rels = [a.put(b, "jpg")[1] for b in blobs]
    fs = s3fs_client()
    assert sorted(fs.find(f"{bucket}/store")) == sorted(f"{bucket}/store/{r}" for r in rels)
    assert all((tmp_path / "a" / r).read_bytes() == b for r, b in zip(rels, blobs, strict=True))

    b = MirroredStore(url, tmp_path / "b", fs=s3fs_client())  # an empty mirror
    assert b.exists(rels[0]) and not (tmp_path / "b" / rels[0]).exists()
    missing = relpath_for(sha256_hex(b"never stored"), "jpg")
    got = b.fetch([*rels, rels[0], missing, None])
    assert (got.present, got.fetched, got.missing, got.altered) == (0, 3, [missing], [])
    assert [(tmp_path / "b" / r).read_bytes() for r in rels] == blobs
    again = b.fetch(rels)
    assert (again.present, again.fetched) == (3, 0)
    assert b.get(rels[1]) == blobs[1]


def test_a_blob_altered_in_the_bucket_is_not_used(tmp_path, bucket):
    url = f"s3://{bucket}/store"
    a = MirroredStore(url, tmp_path / "a", fs=s3fs_client())
    _, rel = a.put(photo_bytes(1), "jpg")
    s3fs_client().pipe_file(f"{bucket}/store/{rel}", b"<html>not the image</html>")
    b = MirroredStore(url, tmp_path / "b", fs=s3fs_client())
    got = b.fetch([rel])
    assert got.altered == [rel] and got.fetched == 0
    assert not (tmp_path / "b" / rel).exists()
    with pytest.raises(OSError, match="other bytes"):
        b.get(rel)


def test_a_stage_on_an_empty_mirror_reads_the_bucket_and_gives_the_local_answer(tmp_path, bucket):
    """dedupe on machine B (nothing local) finds the same copies as on machine A."""
    url = f"s3://{bucket}/store"
    img0 = gem_photo(0)[0]
    a = MirroredStore(url, tmp_path / "A" / "store", fs=s3fs_client())
    rows = []
    for k, data in enumerate([encode(img0), encode(img0, q=80), photo_bytes(5)]):
        iid, _ = a.put(data, "jpg")
        rows.append((iid, "ruby", f"P{k}", 0))
    raw = raw_manifest(rows)
    params = load_params(None, {"dedupe": {"workers": 1}, "data": {"store_root": url}})
    local, _ = dedupe.run(raw, params, store_root=tmp_path / "A" / "store",
                          cache=dedupe.HashCache(tmp_path / "A"))

    io = StageIO.of(params, tmp_path / "B")
    assert io.store_url == url and io.store_root == tmp_path / "B" / "store"
    remote, m = dedupe.run(raw, params, store_root=io.images(raw), cache=dedupe.HashCache(tmp_path / "B"))
    assert m["fingerprinted"] == 3 and m["excluded_duplicates"] == 1
    cols = ["image_id", "dup_cluster", "is_representative", "excluded_reason"]
    pd.testing.assert_frame_equal(local[cols], remote[cols])

    # a blob gone from the bucket (and from this mirror) stops the stage, naming the store
    gone = tmp_path / "C"
    s3fs_client().rm_file(f"{bucket}/store/{raw['path'].iloc[2]}")
    with pytest.raises(StoreDamaged, match="missing or altered"):
        dedupe.run(raw, params, store_root=StageIO.of(params, gone).images(raw),
                   cache=dedupe.HashCache(gone))


def test_a_missing_bucket_or_an_unreachable_endpoint_is_one_clear_error(tmp_path, s3_server):
    data = photo_bytes(2)
    with pytest.raises(StoreUnavailable, match="'no-such-bucket' does not exist"):
        MirroredStore("s3://no-such-bucket/store", tmp_path / "m", fs=s3fs_client()).put(data, "jpg")
    import s3fs

    dead = s3fs.S3FileSystem(skip_instance_cache=True, endpoint_url="http://127.0.0.1:9",
                             config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 1})
    rel = relpath_for(sha256_hex(data), "jpg")
    with pytest.raises(StoreUnavailable, match="cannot fetch 1 blob"):
        MirroredStore("s3://gems/store", tmp_path / "m2", fs=dead).fetch([rel])
