"""The shared embedding: the ONNX port of Lite0 against the Keras port, and its cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.embedding import FEATURES, EmbeddingCache, embed, from_bytes, mean_part, to_bytes
from pipeline.models.efficientnet_lite import EMBEDDING


def test_the_onnx_graph_gives_the_keras_ports_embedding_peaks_and_logits():
    """Two independent ports of one state dict: folded batch norms + SAME_UPPER padding in
    ONNX against Keras' layers with padding="same" (itself checked against PyTorch)."""
    pytest.importorskip("keras")
    from pipeline.models import efficientnet_lite as E
    from pipeline.models import lite0_onnx as L

    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    x[2] = 127  # a flat grey picture: everything comes from the biases and the padding
    emb, peaks, logits = L.session_for(threads=1).run(["embedding", "peaks", "logits"],
                                                      {"image": L.preprocess(x)})
    import keras

    model = E.build(include_top=True)
    E.load_imagenet(model)
    pooled = keras.Model(model.input, model.get_layer("avg_pool").output)
    ref_emb = pooled.predict(x.astype("float32"), verbose=0)
    fmap = keras.Model(model.input, model.get_layer("avg_pool").input).predict(x.astype("float32"),
                                                                                verbose=0)
    ref_logits = model.predict(x.astype("float32"), verbose=0)
    assert emb.shape == (3, EMBEDDING) and logits.shape == (3, 1000)
    np.testing.assert_allclose(emb, ref_emb, atol=1e-4)
    assert peaks.shape == (3, EMBEDDING)
    np.testing.assert_allclose(peaks, fmap.max(axis=(1, 2)), atol=1e-4)
    assert (peaks >= emb - 1e-6).all()
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4)


def test_embed_takes_any_size_and_is_deterministic():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (300, 500, 3), dtype=np.uint8),
            rng.integers(0, 256, (64, 40, 3), dtype=np.uint8)]
    a, b = embed(imgs), embed(imgs, batch=1)
    assert a.shape == (2, FEATURES) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert (a >= 0).all() and (a <= 6).all()  # after ReLU6, average and max pooling
    assert (a[:, EMBEDDING:] >= mean_part(a) - 1e-6).all()  # a maximum is never below the mean
    assert not np.allclose(a[0], a[1])


def test_the_cache_keeps_vectors_by_id_across_parts_and_compacts(tmp_path, monkeypatch):
    import pipeline.core.embedding as E

    monkeypatch.setattr(E, "MAX_PARTS", 3)
    cache = EmbeddingCache(tmp_path / "emb")
    rng = np.random.default_rng(1)
    vecs = {f"id{i}": rng.random(FEATURES).astype(np.float32) * 6 for i in range(10)}
    for i in range(0, 10, 2):  # five parts → compacted once past MAX_PARTS
        ids = [f"id{i}", f"id{i + 1}"]
        cache.add(ids, np.stack([vecs[k] for k in ids]))
    assert len(cache.parts()) <= 3
    fresh = EmbeddingCache(tmp_path / "emb")
    got, found = fresh.get(["id3", "nope", "id9"])
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(got[0], vecs["id3"], rtol=2e-3, atol=2e-3)  # float16 on disk
    assert not got[1].any()
    assert len(fresh) == 10


def test_a_damaged_part_or_row_costs_its_rows_not_the_run(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = EmbeddingCache(tmp_path / "emb")
    cache.add(["good"], np.ones((1, FEATURES), np.float32))
    (tmp_path / "emb" / "part-broken.parquet").write_bytes(b"PAR1 not really")
    pq.write_table(pa.table({"image_id": ["short", "wrongtype"],
                             "vector": [b"\x00" * 10, None]}), tmp_path / "emb" / "part-odd.parquet")
    got, found = EmbeddingCache(tmp_path / "emb").get(["good", "short", "wrongtype"])
    assert found.tolist() == [True, False, False]
    assert got[0][0] == 1.0


def test_vectors_round_trip_as_float16_bytes():
    v = np.linspace(0, 6, EMBEDDING, dtype=np.float32)
    b = to_bytes(v)
    assert len(b) == 2 * EMBEDDING
    np.testing.assert_allclose(from_bytes(b), v, atol=4e-3)


def test_dedupe_embeds_each_image_once_and_the_filter_reads_it(tmp_path):
    """Dedupe fills the cache (a rerun embeds nothing); the filter scores from it without
    writing, and gets the same head votes as when it embeds an image itself."""
    from pipeline.core.config import load_params
    from pipeline.stages import dedupe
    from pipeline.stages import filter as filt
    from tests.helpers import stored_photos

    df = stored_photos(tmp_path)
    params = load_params(None, {"filter": {"workers": 1}, "dedupe": {"workers": 1}})
    emb = EmbeddingCache(tmp_path / "embeddings")
    dd, m = dedupe.run(df, params, store_root=tmp_path / "store", embeddings=emb)
    assert m["images_embedded"] == 3 and len(emb) == 3  # the truncated file has no embedding
    _, m_again = dedupe.run(df, params, store_root=tmp_path / "store",
                            embeddings=EmbeddingCache(tmp_path / "embeddings"))
    assert m_again["images_embedded"] == 0
    parts = sorted(p.name for p in emb.parts())
    out, mf = filt.run(dd, params, store_root=tmp_path / "store",
                       embeddings=EmbeddingCache(tmp_path / "embeddings"))
    assert mf["images_embedded"] == 0 and sorted(p.name for p in emb.parts()) == parts
    assert out["head_hand"].notna().sum() == 3 and out["head_certificate"].notna().sum() == 3
    # the cache is read whether or not the hand models run
    no_pose = load_params(None, {"filter": {"workers": 1, "hand_pose": False}})
    _, m_np = filt.run(dd, no_pose, store_root=tmp_path / "store",
                       embeddings=EmbeddingCache(tmp_path / "embeddings"))
    assert m_np["images_embedded"] == 0
    # no cache: the filter embeds what it scores, from the same decode: the same votes
    alone, m2 = filt.run(dd, params, store_root=tmp_path / "store")
    assert m2["images_embedded"] == 3
    pd.testing.assert_series_equal(out["head_hand"], alone["head_hand"])
    # without the embedding: no head columns, and the handcrafted scores alone
    off = load_params(None, {"filter": {"workers": 1, "embedding": False}})
    plain, m3 = filt.run(dd, off, store_root=tmp_path / "store")
    assert m3["images_embedded"] == 0 and plain["head_hand"].isna().all()


def test_the_embedding_search_is_exact():
    """Blockwise search against the full matrix: all pairs, and incremental (new rows only)."""
    from pipeline.core.embedding import cosine_pairs, unit

    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (700, 64))
    x[350:400] = x[:50] + rng.normal(0, 0.2, (50, 64))  # planted near copies
    x[600] = 0  # an image without an embedding: never a candidate
    u = unit(x)
    full = u @ u.T
    want = {(i, j) for i, j in zip(*np.nonzero(np.triu(full >= 0.9, 1)), strict=True)}
    i, j, c = cosine_pairs(u, 0.9, block=64)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and len(i) == len(want) >= 50
    np.testing.assert_allclose(c, full[i, j], rtol=1e-5)
    new = np.arange(380, 700)
    i2, j2, _ = cosine_pairs(u, 0.9, new, block=50)
    got = set(zip(i2.tolist(), j2.tolist(), strict=True))
    assert got == {(a, b) for a, b in want if a >= 380 or b >= 380} and len(got) == len(i2)


def test_close_embeddings_are_candidates_that_hashes_miss(tmp_path):
    """A 5 %-cropped, re-encoded copy with the hash radii at 0: only the embedding proposes
    the pair, the usual verification confirms it; with the embedding off it stays apart."""
    from pipeline.core.blobstore import BlobStore
    from pipeline.core.config import load_params
    from pipeline.stages import dedupe
    from tests.helpers import encode, gem_photo, photo_bytes, raw_manifest

    store = BlobStore(tmp_path / "store")
    photo = gem_photo(4)[0]
    h, w = photo.shape[:2]
    crop = photo[int(0.04 * h):, int(0.05 * w):]
    rows = [(store.put(encode(photo), "jpg")[0], "ruby", "P0", 800),
            (store.put(encode(crop, q=80), "jpg")[0], "ruby", "P1", 760),
            (store.put(photo_bytes(5), "jpg")[0], "ruby", "P2", 800)]
    df = raw_manifest(rows)
    strict = {"phash_radius": 0, "dhash_radius": 0, "certain_distance": -1, "workers": 1}
    on = load_params(None, {"dedupe": strict})
    out, m = dedupe.run(df, on, store_root=tmp_path / "store", embeddings=EmbeddingCache(None))
    cl = out.set_index("product_id")["dup_cluster"]
    assert cl["P0"] == cl["P1"] != cl["P2"]
    assert m["near_duplicate_pairs"] == 1
    off = load_params(None, {"dedupe": {**strict, "embedding": False}})
    out2, m2 = dedupe.run(df, off, store_root=tmp_path / "store")
    cl2 = out2.set_index("product_id")["dup_cluster"]
    assert cl2["P0"] != cl2["P1"] and m2["images_embedded"] == 0 and m2["near_duplicate_pairs"] == 0


def test_the_built_graph_is_kept_per_machine_and_a_damaged_copy_is_built_again(tmp_path, monkeypatch):
    """The ONNX graph is built once (1.3 s: onnx imported, every layer folded) and read back
    by later processes; a copy that does not match its hash is rebuilt, and a cache that
    cannot be written costs only the time."""
    from pipeline.models import lite0_onnx
    from pipeline.models.efficientnet_lite import weights_path

    monkeypatch.setenv("GEMCURATE_CACHE", str(tmp_path / "cache"))
    lite0_onnx._model_bytes.cache_clear()
    built = lite0_onnx._model_bytes(str(weights_path()))
    kept = list(lite0_onnx.cache_dir().glob("lite0-*.onnx"))
    assert len(kept) == 1 and kept[0].read_bytes() == built
    kept[0].write_bytes(built[: len(built) // 2])  # truncated on disk
    lite0_onnx._model_bytes.cache_clear()
    assert lite0_onnx._model_bytes(str(weights_path())) == built
    assert kept[0].read_bytes() == built  # repaired
    (tmp_path / "not-a-dir").write_text("x")
    monkeypatch.setenv("GEMCURATE_CACHE", str(tmp_path / "not-a-dir"))
    lite0_onnx._model_bytes.cache_clear()
    assert lite0_onnx._model_bytes(str(weights_path())) == built
    lite0_onnx._model_bytes.cache_clear()
