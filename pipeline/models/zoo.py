"""The model zoo of ``train.model``: a backbone that gives a pooled embedding, and a head.

* ``efficientnet_lite0`` (the default): EfficientNet-Lite0 with offline ImageNet weights
  (:mod:`pipeline.models.efficientnet_lite`).
* ``gemnet``: the published gemstone project's own CNN, trained from scratch: five 3×3
  convolutions with max pooling (an average pool after the fourth), flatten, two dense
  layers, dropout 0.5, L2 weight decay.
* ``mobilenet_v2``, ``resnet50``, ``vgg16``, ``efficientnet_b2``: ``keras.applications``
  with ``weights=None``, or a local weights file (``train.weights_file``). Nothing is
  downloaded: Keras' ``weights="imagenet"`` would, so it is never passed.

Every model takes RGB in 0…255 and does its own preprocessing inside, so a saved model
needs nothing but pixels (``gemcurate predict`` relies on it).

Example:
    >>> backbone, embed_dim = build_backbone("efficientnet_lite0", 224)
    >>> model = classifier(backbone, classes=12, dropout=0.2)
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np

from pipeline.core.config import ConfigError
from pipeline.models.torch_legacy import WeightsError

logger = logging.getLogger(__name__)

MODELS = ("efficientnet_lite0", "gemnet", "mobilenet_v2", "resnet50", "vgg16", "efficientnet_b2")
PRETRAINED = ("efficientnet_lite0",)  # ImageNet weights without a file of the user's


def _preprocess(name: str):
    """The layer that turns 0…255 RGB into what ``name``'s weights expect."""
    from keras import layers

    if name == "mobilenet_v2":
        return layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    if name in ("resnet50", "vgg16"):  # "caffe": BGR, ImageNet means subtracted
        return _caffe_class()(name="preprocess")
    return None  # efficientnet_b2 rescales inside; gemnet learns from 0…1 below


@functools.cache
def _caffe_class():
    import keras

    @keras.saving.register_keras_serializable(package="gemcurate")
    class CaffePreprocess(keras.layers.Layer):
        def call(self, x):
            return x[..., ::-1] - keras.ops.convert_to_tensor([103.939, 116.779, 123.68], x.dtype)

    return CaffePreprocess


def _gemnet(size: int, l2: float):
    import keras
    from keras import layers, regularizers

    reg = regularizers.L2(l2)
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 255, name="preprocess")(inp)
    for i, filters in enumerate((32, 64, 128, 128, 256)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_regularizer=reg,
                          name=f"conv{i + 1}")(x)
        pool = layers.AveragePooling2D if i == 3 else layers.MaxPooling2D
        x = pool(2, name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", kernel_regularizer=reg, name="fc1")(x)
    x = layers.Dropout(0.5, name="fc1_dropout")(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=reg, name="embedding")(x)
    return keras.Model(inp, x, name="gemnet")


def require_keras() -> None:
    """Refuse in one line when the training extras are not installed."""
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        raise WeightsError("training needs TensorFlow and Keras: pip install 'gemcurate[train]' "
                           "(tensorflow[and-cuda] on a GPU machine)") from None


def build_backbone(name: str, size: int, weights_file: str | None = None, l2: float = 1e-4):
    """``(model, embedding size)``: a Keras model from 0…255 RGB to a pooled embedding.

    Raises:
        ConfigError: An unknown ``train.model``.
        WeightsError: A weights file that is missing or does not fit (naming the key).
    """
    require_keras()
    import keras

    if name not in MODELS:
        raise ConfigError(f"train.model: {name!r} is not one of {', '.join(MODELS)}")
    if weights_file is not None and not Path(weights_file).is_file():
        raise WeightsError(f"train.weights_file: {weights_file} not found")
    if name == "efficientnet_lite0":
        from pipeline.models import efficientnet_lite

        model = efficientnet_lite.build((size, size, 3), include_top=False)
        efficientnet_lite.load_imagenet(model, weights_file)
        return model, efficientnet_lite.EMBEDDING
    if name == "gemnet":
        model = _gemnet(size, l2)
        if weights_file:
            model.load_weights(weights_file)
        return model, 128
    apps = {"mobilenet_v2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50,
            "vgg16": keras.applications.VGG16, "efficientnet_b2": keras.applications.EfficientNetB2}
    inp = keras.Input((size, size, 3), name="image")
    pre = _preprocess(name)
    x = pre(inp) if pre is not None else inp
    # weights=None always: "imagenet" would download; a local file is loaded below
    base = apps[name](include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg")
    if weights_file:
        try:
            base.load_weights(weights_file, skip_mismatch=False)
        except Exception as exc:  # Keras raises several types for a file that does not fit
            raise WeightsError(f"train.weights_file: {weights_file} does not fit {name} ({exc})") from None
    else:
        logger.warning("%s: no train.weights_file, training from random weights", name)
    out = base(x)
    return keras.Model(inp, out, name=name), int(out.shape[-1])


def feature_runner(backbone, name: str):
    """A function from a batch of 0…255 RGB pictures (N × H × W × 3) to ``backbone``'s pooled
    features (N × D float32), for the passes that only read them (train's cached features,
    evaluate's embeddings).

    EfficientNet-Lite0 on a machine without a GPU runs in ONNX Runtime with the backbone's
    weights as they are now (fine-tuned or not): the same network, to 1e-4
    (tests/test_models.py), in a third of TensorFlow's time on a CPU (13 against 37 ms an
    image on one thread; docs/architecture.md). Anything else runs in Keras.
    """
    import tensorflow as tf

    if name == "efficientnet_lite0" and not tf.config.list_physical_devices("GPU"):
        from pipeline.models import efficientnet_lite, lite0_onnx

        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0") or 0)
        session = lite0_onnx.session_for_state(efficientnet_lite.state_from_keras(backbone), threads)

        def onnx_features(x) -> np.ndarray:
            return session.run(["embedding"], {"image": lite0_onnx.preprocess(np.asarray(x))})[0]

        return onnx_features

    def keras_features(x) -> np.ndarray:
        return np.asarray(backbone.predict_on_batch(x), np.float32)  # compiled: eager calls leak

    return keras_features


def head(embed_dim: int, classes: int, dropout: float, name: str = "head", unit: bool = False):
    """Dropout and a softmax layer (float32 even under mixed precision); with ``unit`` the
    embedding is L2-normalised first (the head a probe's weights are loaded into)."""
    import keras
    from keras import layers

    inp = keras.Input((embed_dim,), name="embedding")
    x = layers.UnitNormalization(name="unit")(inp) if unit else inp
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(classes, name="logits")(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inp, out, name=name)


def classifier(backbone, top, frozen_bn: bool = True):
    """``top(backbone(image))`` as one model: what is saved and what predict loads.

    With ``frozen_bn`` the backbone runs in inference mode even while fine-tuning (its batch
    norms keep their ImageNet statistics: the Keras advice for transfer learning).
    """
    import keras

    inp = keras.Input(backbone.input_shape[1:], name="image")
    x = backbone(inp, training=False) if frozen_bn else backbone(inp)
    return keras.Model(inp, top(x), name="classifier")
