"""Rebuild the shipped hand-pose models (``pipeline/weights/hands/``) from MediaPipe's wheel.

MediaPipe's legacy *Hands* solution ships two TensorFlow Lite models inside its
``mediapipe==0.10.14`` wheel (Apache-2.0): ``palm_detection_full.tflite`` (a palm
detector, 192 × 192) and ``hand_landmark_full.tflite`` (21 landmarks and a
hand-presence score on a 224 × 224 crop). gemcurate runs them with ONNX Runtime, as it
runs the embedding, so the filter never imports TensorFlow. This script makes the ONNX
files: tf2onnx converts each model, then every large float32 weight is stored as
float16 and cast back to float32 when the session loads (half the bytes; the outputs
move by under 1e-3, checked here against the TFLite interpreter on a test pattern).

    pip download mediapipe==0.10.14 --no-deps -d /tmp/mp   # any machine with PyPI
    pip install tf2onnx                                      # and tensorflow(-cpu)
    python scripts/convert_hand_models.py /tmp/mp/mediapipe-0.10.14-*.whl

It writes the two ``.onnx`` files, ``SOURCE.json`` (the wheel's, each TFLite model's and
each ONNX file's SHA-256, and the tool versions) and MediaPipe's ``LICENSE``. The
filter verifies each file's hash against ``SOURCE.json`` before loading it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "pipeline" / "weights" / "hands"
MODELS = {"palm_detection_full": "mediapipe/modules/palm_detection/palm_detection_full.tflite",
          "hand_landmark_full": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite"}
LICENSE = "mediapipe-0.10.14.dist-info/LICENSE"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_to_float16(path: Path) -> None:
    """Store float32 initializers of 64+ values as float16, cast back to float32 on load."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    casts, keep = [], []
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 64:
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__f16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "__cast"))
        else:
            keep.append(init)
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def compare(tflite: Path, onnx_path: Path) -> float:
    """Largest output difference between the TFLite model and its ONNX file on a test pattern."""
    import onnxruntime as ort
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    side = int(inp["shape"][1])
    yy, xx = np.mgrid[0:side, 0:side] / side
    x = np.stack([xx, yy, (xx * yy) ** 0.5], -1)[None].astype(np.float32)
    it.set_tensor(inp["index"], x)
    it.invoke()
    ref = {o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x}),
                   strict=True))
    return max(float(np.max(np.abs(ref[k] - got[k])) / (1.0 + np.max(np.abs(ref[k])))) for k in ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("wheel", type=Path, help="mediapipe-0.10.14-cp311-...whl")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    import tf2onnx

    wheel = a.wheel.read_bytes()
    a.out.mkdir(parents=True, exist_ok=True)
    source = {"wheel": a.wheel.name, "wheel_sha256": sha256(wheel), "license": "Apache-2.0",
              "tf2onnx": tf2onnx.__version__, "opset": 17, "models": {}}
    with zipfile.ZipFile(a.wheel) as z, tempfile.TemporaryDirectory() as tmp:
        (a.out / "LICENSE").write_bytes(z.read(LICENSE))
        for name, member in MODELS.items():
            tfl = Path(tmp) / f"{name}.tflite"
            tfl.write_bytes(z.read(member))
            dst = a.out / f"{name}.onnx"
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tfl),
                            "--output", str(dst), "--opset", "17"], check=True)
            weights_to_float16(dst)
            diff = compare(tfl, dst)
            if diff > 1e-2:
                raise SystemExit(f"{name}: the ONNX file's outputs differ from TFLite's by {diff:.2g}")
            source["models"][name] = {"from": member, "tflite_sha256": sha256(tfl.read_bytes()),
                                      "sha256": sha256(dst.read_bytes()),
                                      "max_relative_difference": round(diff, 6)}
            print(f"{name}: {dst.stat().st_size / 1e6:.1f} MB, max relative difference {diff:.2g}")
    (a.out / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")


if __name__ == "__main__":
    main()
