"""Cost of the shared embedding (EfficientNet-Lite0, 224 px) on CPU.

Compares what the stages run — the ONNX graph on ONNX Runtime
(:mod:`pipeline.models.lite0_onnx`) — over threads and batch sizes, with the Keras
port on TensorFlow (the training stack), per image, after a warm-up. Also the
resize to 224 px and the cache's read and write speed.

Usage:
    .venv/bin/python -m bench.embedding [--images 256] [--out bench/out/embedding.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.embedding import FEATURES, EmbeddingCache  # noqa: E402
from pipeline.models import lite0_onnx  # noqa: E402


def _timed(fn, reps: int = 3) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def hand_models(images: int = 24) -> dict:
    """MediaPipe's hand models (``filter.hand_pose``) on one thread: each stage, and the whole
    score on generated hands (where every pass proposes palms) and on generated gems."""
    from pipeline.core.imageio import fit
    from pipeline.models import handpose
    from pipeline.synthetic import junk
    from pipeline.synthetic.gems import render_small_gem

    rng = np.random.default_rng(0)
    hands = [fit(junk.render_hand(rng, "ruby"), 400) for _ in range(images)]
    gems = [render_small_gem(rng, "emerald", 400) for _ in range(images)]
    canvas = handpose.letterbox(hands[0], 1.0)
    crop = np.zeros((handpose.LANDMARK_SIDE, handpose.LANDMARK_SIDE, 3), np.uint8)
    res = {"passes": len(handpose.MARGINS),
           "palm_pass_ms": round(1000 * _timed(lambda: [handpose.detect_palms(canvas) for _ in range(20)])
                                 / 20, 2),
           "landmark_crop_ms": round(1000 * _timed(lambda: [handpose.presence(crop) for _ in range(20)])
                                     / 20, 2)}
    for name, ims in (("hand", hands), ("gem", gems)):
        t = _timed(lambda ims=ims: [handpose.hand_presence(im) for im in ims], reps=2)
        res[f"{name}_ms_per_image"] = round(1000 * t / len(ims), 2)
    # the skin route (checks.hand.skin_regions): close-ups of the fingers, the palm cut off,
    # and ring products on a beige backdrop (the backdrop is the proposed region)
    from pipeline.stages.filter.checks.hand import skin_regions
    from pipeline.synthetic import worn

    close = [np.ascontiguousarray(h[:int(h.shape[0] * 0.55), int(h.shape[1] * 0.2):int(h.shape[1] * 0.8)])
             for h in hands]
    rings = [fit(worn.render_ring_product(rng, "sapphire"), 400) for _ in range(images)]
    for name, ims in (("close_up", close), ("ring_product", rings)):
        regions = [skin_regions(im) for im in ims]
        alone = [handpose.hand_presence(im) for im in ims]
        both = [handpose.hand_presence(im, r) for im, r in zip(ims, regions, strict=True)]
        res[f"{name}_found_palm_route"] = round(float(np.mean(np.array(alone) >= 0.7)), 3)
        res[f"{name}_found_with_skin_route"] = round(float(np.mean(np.array(both) >= 0.7)), 3)
        res[f"{name}_region_proposed"] = round(float(np.mean([bool(r) for r in regions])), 3)
        t0 = _timed(lambda ims=ims: [handpose.hand_presence(im) for im in ims], reps=2)
        t1 = _timed(lambda ims=ims: [handpose.hand_presence(im, skin_regions(im)) for im in ims], reps=2)
        res[f"{name}_skin_route_extra_ms_per_image"] = round(1000 * (t1 - t0) / len(ims), 2)
    print("hand models (1 thread):", res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--hands", action="store_true", help="only the hand models' cost")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "embedding.json"))
    a = ap.parse_args()
    if a.hands:
        res = {"cores": os.cpu_count(), "hand_models": hand_models()}
        print(json.dumps(res, indent=2))
        return
    rng = np.random.default_rng(0)
    n = a.images
    x224 = rng.integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    big = [rng.integers(0, 256, (400, 300, 3), dtype=np.uint8) for _ in range(64)]
    res: dict = {"cores": os.cpu_count(), "images": n}
    t = _timed(lambda: [lite0_onnx.fit_square(b) for b in big])
    res["resize_400px_to_224_ms"] = round(1000 * t / len(big), 3)
    onnx = {}
    for threads in (1, 2):
        sess = lite0_onnx.session_for(threads=threads)
        for batch in (1, 16, 64):
            def run(sess=sess, batch=batch) -> None:
                for i in range(0, n, batch):
                    sess.run(["embedding", "peaks"], {"image": lite0_onnx.preprocess(x224[i:i + batch])})
            t = _timed(run, reps=2)
            onnx[f"threads{threads}_batch{batch}_ms_per_image"] = round(1000 * t / n, 2)
            print(f"onnxruntime threads={threads} batch={batch}: {1000 * t / n:.2f} ms/image", flush=True)
    res["onnxruntime"] = onnx
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from pipeline.models import efficientnet_lite

        model = efficientnet_lite.build(include_top=False)
        efficientnet_lite.load_imagenet(model)
        xf = x224.astype("float32")
        t = _timed(lambda: model.predict(xf, batch_size=32, verbose=0), reps=2)
        res["keras_tensorflow_batch32_ms_per_image"] = round(1000 * t / n, 2)
        print(f"keras/tensorflow batch=32: {1000 * t / n:.2f} ms/image", flush=True)
    except ImportError:
        res["keras_tensorflow_batch32_ms_per_image"] = None
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp))
        ids = [f"{i:064x}" for i in range(20_000)]
        vecs = rng.random((len(ids), FEATURES)).astype(np.float32)
        t = time.perf_counter()
        cache.add(ids, vecs)
        res["cache_write_20k_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        _, found = EmbeddingCache(Path(tmp)).get(ids[::2])
        res["cache_read_10k_of_20k_s"] = round(time.perf_counter() - t, 3)
        res["cache_bytes_per_image"] = round(sum(p.stat().st_size for p in cache.parts()) / len(ids), 1)
        assert found.all()
    # the candidate search: exact blockwise brute force, all pairs and new × all
    from pipeline.core.embedding import cosine_pairs, unit

    for total in (10_000, 40_000):
        u = unit(rng.normal(0, 1, (total, 1280)).astype(np.float32))
        t = time.perf_counter()
        cosine_pairs(u, 0.93, np.arange(total - total // 100, total))  # a refresh adding 1 %
        res[f"search_new_1pct_of_{total}_s"] = round(time.perf_counter() - t, 3)
        if total <= 10_000:
            t = time.perf_counter()
            cosine_pairs(u, 0.93)
            res[f"search_all_pairs_{total}_s"] = round(time.perf_counter() - t, 2)
    res["hand_models"] = hand_models()
    print(json.dumps(res, indent=2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
