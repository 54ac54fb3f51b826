"""The model zoo and the offline weights: the torch-free reader and the Keras port against
a PyTorch reference (scripts/lite0_reference.py), every architecture at a small size."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from pipeline.core.config import ConfigError
from pipeline.models import efficientnet_lite, zoo
from pipeline.models.torch_legacy import WeightsError, load_state_dict
from tests.helpers import ROOT, needs

needs("keras", "tensorflow")

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


def test_the_port_reads_back_what_it_wrote(lite0):
    """Keras → state dict is the inverse of state dict → Keras, array for array."""
    back = efficientnet_lite.state_from_keras(lite0)
    sd = load_state_dict(efficientnet_lite.weights_path())
    assert set(back) == {k for k in sd if not k.endswith("num_batches_tracked")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k], err_msg=k)


def test_a_trained_backbone_runs_in_onnx_as_in_keras():
    """The feature runner's ONNX Runtime path, with weights a fine-tuning changed and at an
    image size other than 224, gives what the Keras backbone gives; another model runs in
    Keras."""
    backbone, dim = zoo.build_backbone("efficientnet_lite0", 160)
    rng = np.random.default_rng(7)
    for name in ("block3_dwconv", "block9_project_bn", "head_conv"):  # as if fine-tuned
        layer = backbone.get_layer(name)
        layer.set_weights([w * rng.uniform(0.8, 1.2, w.shape).astype(np.float32)
                           for w in layer.get_weights()])
    x = rng.uniform(0, 255, (3, 160, 160, 3)).astype(np.float32)
    run = zoo.feature_runner(backbone, "efficientnet_lite0")
    assert run.__name__ == "onnx_features"
    got, want = run(x), backbone.predict(x, verbose=0)
    assert got.shape == (3, dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(run(x[:, :, ::-1]), backbone.predict(x[:, :, ::-1], verbose=0), atol=1e-4,
                               rtol=1e-4)  # a mirrored view (evaluate's test-time augmentation)
    gem, _ = zoo.build_backbone("gemnet", 32)
    assert zoo.feature_runner(gem, "gemnet").__name__ == "keras_features"


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
