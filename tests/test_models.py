"""The model zoo and the offline weights: the torch-free reader and the Keras port against
a PyTorch reference (scripts/lite0_reference.py), every architecture at a small size."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("keras")

from pipeline.core.config import ConfigError
from pipeline.models import efficientnet_lite, zoo
from pipeline.models.torch_legacy import WeightsError, load_state_dict
from tests.helpers import ROOT

REF = np.load(ROOT / "tests" / "data" / "efficientnet_lite0_reference.npz")
sys.path.insert(0, str(ROOT / "scripts"))
from lite0_reference import reference_inputs  # noqa: E402


def test_the_reader_gives_every_tensor_of_the_state_dict():
    sd = load_state_dict(efficientnet_lite.weights_path())
    assert len(sd) == 296 and sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["_conv_stem.weight"][:2], REF["stem_weight"])


@pytest.fixture(scope="module")
def lite0():
    m = efficientnet_lite.build(include_top=True)
    efficientnet_lite.load_imagenet(m)
    return m


def test_the_keras_port_reproduces_pytorch(lite0):
    import keras

    x = reference_inputs()
    logits = lite0.predict(x, verbose=0)
    emb = keras.Model(lite0.input, lite0.get_layer("avg_pool").output).predict(x, verbose=0)
    np.testing.assert_allclose(logits, REF["logits"], atol=1e-4)
    np.testing.assert_allclose(emb, REF["embedding"], atol=1e-4)
    assert (logits.argmax(1) == REF["logits"].argmax(1)).all()


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(b"cos\nsystem\n(S'echo owned > " + str(tmp_path / "owned").encode() + b"'\ntR.")
    with pytest.raises(WeightsError, match=r"refused to load os\.system"):
        load_state_dict(evil)
    assert not (tmp_path / "owned").exists()
    for bad in (b"", b"PK\x03\x04 a zip", b"\x80\x02K\x01."):
        (tmp_path / "bad.pth").write_bytes(bad)
        with pytest.raises(WeightsError):
            load_state_dict(tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="not found"):
        load_state_dict(tmp_path / "missing.pth")


@pytest.mark.parametrize("name", zoo.MODELS)
def test_every_architecture_builds_and_classifies_at_a_small_size(name):
    size = 64
    backbone, dim = zoo.build_backbone(name, size)
    model = zoo.classifier(backbone, zoo.head(dim, 3, 0.2), frozen_bn=name != "gemnet")
    x = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype("uint8")
    p = np.asarray(model.predict_on_batch(x))
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-4)
    assert backbone.output_shape[-1] == dim


def test_an_unknown_model_or_a_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.model"):
        zoo.build_backbone("resnet9000", 64)
    with pytest.raises(WeightsError, match=r"train\.weights_file"):
        zoo.build_backbone("resnet50", 64, str(tmp_path / "nope.h5"))
