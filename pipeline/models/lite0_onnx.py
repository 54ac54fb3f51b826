"""EfficientNet-Lite0 as an ONNX graph, for embedding images on CPU without TensorFlow.

The curation stages need the backbone's pooled embedding of every image (the junk
heads of the filter, later the near-duplicate candidates), but must not pull
TensorFlow into a worker that otherwise needs OpenCV alone: importing it costs
seconds and a gigabyte, and the curation install does not have it. ONNX Runtime
is already a dependency (rapidocr runs on it), so the same ImageNet weights the
Keras port reads (:mod:`pipeline.models.torch_legacy`) are written here into an
ONNX graph node by node:

* every batch norm is folded into the convolution before it (inference only), so the
  graph is Conv → Clip(0, 6) throughout, with ``auto_pad=SAME_UPPER``, which is
  TensorFlow's ``padding="same"`` (the weights were trained in TensorFlow);
* the input is NCHW float32 already scaled ``(x − 127) / 128`` (:func:`preprocess`):
  folding the scale into the stem would be wrong at the zero-padded border;
* outputs: ``embedding`` (N × 1280, after global average pooling), ``peaks`` (N × 1280,
  the same feature map's global maximum: where in the picture a feature fires strongest,
  which a small part such as a finger or a seal leaves even when the average hardly moves)
  and ``logits`` (N × 1000, the ImageNet head).

``tests/test_embedding.py`` checks the graph against the Keras port to 1e-4.

Example:
    >>> session = session_for(load_state_dict(weights_path()), threads=1)
    >>> emb = session.run(["embedding"], {"image": preprocess(batch)})[0]
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.models.efficientnet_lite import BN_EPS, EMBEDDING, blocks, weights_path
from pipeline.models.torch_legacy import WeightsError, load_state_dict

logger = logging.getLogger(__name__)

SIZE = 224
OPSET = 17


def preprocess(images: np.ndarray) -> np.ndarray:
    """N × H × W × 3 uint8 RGB → N × 3 × H × W float32, scaled ``(x − 127) / 128``."""
    x = images.astype(np.float32)
    x -= 127.0
    x *= 1.0 / 128.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def fit_square(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The whole picture resized to ``size`` × ``size`` (aspect not kept: nothing is cut off)."""
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
    out = cv2.resize(rgb, (size, size), interpolation=interp)
    return out if out.ndim == 3 else np.repeat(out[..., None], 3, axis=2)


def _fold(w: np.ndarray, state: dict[str, np.ndarray], bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights (out, in, kh, kw) and bias with the batch norm ``bn`` folded in."""
    gamma, beta = state[bn + ".weight"], state[bn + ".bias"]
    mean, var = state[bn + ".running_mean"], state[bn + ".running_var"]
    k = gamma / np.sqrt(var + BN_EPS)
    return (w * k[:, None, None, None]).astype(np.float32), (beta - mean * k).astype(np.float32)


# long: the network's layers in the published architecture's order, one node each
def build_model(state: dict[str, np.ndarray], size: int | None = SIZE):
    """The ONNX ``ModelProto`` of EfficientNet-Lite0 with the weights of ``state``, for
    ``size`` × ``size`` pictures (``None``: any size). Without ``_fc`` weights in ``state``
    (a backbone without the ImageNet head) the graph has no ``logits`` output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    counter = [0]

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    six, zero = const("six", np.array(6.0, np.float32)), const("zero", np.array(0.0, np.float32))

    def conv(x: str, torch_name: str, bn: str, stride: int = 1, group: int = 1, relu: bool = True) -> str:
        counter[0] += 1
        n = f"n{counter[0]}"
        w, b = _fold(state[torch_name + ".weight"], state, bn)
        k = w.shape[-1]
        out = n + "_conv"
        nodes.append(helper.make_node(
            "Conv", [x, const(n + "_w", w), const(n + "_b", b)], [out], kernel_shape=[k, k],
            strides=[stride, stride], group=group,
            auto_pad="SAME_UPPER" if k > 1 or stride > 1 else "NOTSET"))
        if not relu:
            return out
        nodes.append(helper.make_node("Clip", [out, zero, six], [n + "_relu"]))
        return n + "_relu"

    try:
        x = conv("image", "_conv_stem", "_bn0", stride=2)
        for i, expand, _k, s, c_in, _c_out, residual in blocks():
            t = f"_blocks.{i}."
            h = x
            if expand != 1:
                h = conv(h, t + "_expand_conv", t + "_bn0")
            h = conv(h, t + "_depthwise_conv", t + "_bn1", stride=s, group=c_in * expand)
            h = conv(h, t + "_project_conv", t + "_bn2", relu=False)
            if residual:
                nodes.append(helper.make_node("Add", [x, h], [f"add{i}"]))
                h = f"add{i}"
            x = h
        x = conv(x, "_conv_head", "_bn1")
    except KeyError as exc:
        raise WeightsError(f"not EfficientNet-Lite0 weights (no {exc})") from None
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1))
    nodes.append(helper.make_node("GlobalMaxPool", [x], ["maxed"]))
    nodes.append(helper.make_node("Flatten", ["maxed"], ["peaks"], axis=1))
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", EMBEDDING]),
               helper.make_tensor_value_info("peaks", TensorProto.FLOAT, ["n", EMBEDDING])]
    if "_fc.weight" in state:
        fc_w, fc_b = state["_fc.weight"].astype(np.float32), state["_fc.bias"].astype(np.float32)
        nodes.append(helper.make_node("Gemm", ["embedding", const("fc_w", fc_w), const("fc_b", fc_b)],
                                      ["logits"], transB=1))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", fc_w.shape[0]]))
    side = size if size is not None else "side"
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, side, side])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gemcurate")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def weights_id(path: str | Path | None = None) -> str:
    """A short hash of the weights file: embeddings are only comparable under one."""
    p = Path(path) if path else weights_path()
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def cache_dir() -> Path:
    """Where built graphs are kept: ``$GEMCURATE_CACHE/models`` or ``~/.cache/gemcurate/models``."""
    base = os.environ.get("GEMCURATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gemcurate")
    return Path(base) / "models"


def _graph_key(weights: bytes) -> str:
    """What a built graph depends on: the weights, the code that builds it, onnx's version."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256(weights)
    for f in (Path(__file__), Path(__file__).with_name("efficientnet_lite.py"),
              Path(__file__).with_name("torch_legacy.py")):
        h.update(f.read_bytes())
    with contextlib.suppress(PackageNotFoundError):
        h.update(version("onnx").encode())
    return h.hexdigest()[:32]


@lru_cache(maxsize=4)
def _model_bytes(path: str) -> bytes:
    """The serialized graph for the weights at ``path``, built once per machine.

    Building it imports ``onnx`` and folds every layer: 1.3 s, which every process that
    embeds paid (a refresh's dedupe of 30 new images spent 2.2 s embedding them, 0.4 s of it
    in the network). The graph is kept in :func:`cache_dir` under a key of everything it
    depends on, beside its SHA-256; a file that does not match its hash is built again, and a
    cache that cannot be written costs only the time.
    """
    weights = Path(path).read_bytes()
    target = cache_dir() / f"lite0-{_graph_key(weights)}.onnx"
    digest = target.with_suffix(".sha256")
    try:
        data = target.read_bytes()
        if hashlib.sha256(data).hexdigest() == digest.read_text().strip():
            return data
    except OSError:
        pass
    data = build_model(load_state_dict(path)).SerializeToString()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for dest, payload in ((target, data), (digest, hashlib.sha256(data).hexdigest().encode())):
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{dest.name}.")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(payload)
                os.replace(tmp, dest)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except OSError as exc:
        logger.debug("cannot keep the built graph in %s: %s", target.parent, exc)
    return data


def _session(graph: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))  # 0: ONNX Runtime's choice (every core)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])


def session_for(path: str | Path | None = None, threads: int = 1):
    """An ONNX Runtime session of the Lite0 graph (built once per process and weights file)."""
    return _session(_model_bytes(str(path or weights_path())), max(1, int(threads)))


def session_for_state(state: dict[str, np.ndarray], threads: int = 0):
    """A session of the Lite0 graph with the weights of ``state`` (a trained model's, from
    :func:`pipeline.models.efficientnet_lite.state_from_keras`), for pictures of any size.
    Built in memory, never kept: a trained backbone is one run's."""
    return _session(build_model(state, size=None).SerializeToString(), threads)
