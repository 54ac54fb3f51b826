"""The external test of the evaluate stage: photos from outside the pipeline, scored as
`gemcurate predict` scores them, beside a raw-photo probe, on a tiny folder with known answers.

The model is a real Keras model with fixed weights that calls a photo by its dominant
channel (red, green or blue), so every answer is known before it runs; the probe is the
real one (Lite0 embedding + logistic regression) on real stored photos.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.blobstore import BlobStore
from pipeline.core.probe import Probe
from pipeline.stages import evaluate
from tests.helpers import needs, params

needs("keras", "tensorflow")

COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 40, 200)}


def disc(colour, size=256, seed=0, bg=(245, 245, 245)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = bg
    r = int(size * rng.uniform(0.2, 0.32))
    c = (int(size / 2 + rng.integers(-20, 20)), int(size / 2 + rng.integers(-20, 20)))
    shade = tuple(int(np.clip(v + rng.integers(-25, 25), 0, 255)) for v in colour)
    cv2.circle(img, c, r, shade, -1)
    return img


def png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img[..., ::-1])[1].tobytes()


def colour_model(size: int = 64):
    """Softmax over the mean of (B - (R+G)/2, G - (R+B)/2, R - (G+B)/2), in the class order
    blue, green, red: a photo's dominant channel wins, and the white padding around a crop
    adds the same to every class."""
    import keras

    inp = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(inp)
    dense = keras.layers.Dense(3, name="head")
    out = keras.layers.Activation("softmax")(dense(x))
    model = keras.Model(inp, out)
    # rows: the input's R, G, B; columns: the classes in order (blue, green, red)
    w = np.array([[-.5, -.5, 1], [-.5, 1, -.5], [1, -.5, -.5]], np.float32) * 0.2
    dense.set_weights([w, np.zeros(3, np.float32)])
    return model


@pytest.fixture
def project(tmp_path):
    """A raw manifest of stored training photos, a dataset manifest, and an external folder."""
    data = tmp_path / "data"
    store = BlobStore(data / "store")
    raw_rows, ds_rows = [], []
    for c, (name, colour) in enumerate(COLOURS.items()):
        for p in range(4):
            for k in range(2):
                iid, rel = store.put(png(disc(colour, seed=100 * c + 10 * p + k)), "png")
                split = "train" if p < 3 else "test"
                row = {"image_id": iid, "path": rel, "label": name, "product_id": f"{name}-{p}",
                       "status": "active", "excluded_reason": None}
                raw_rows.append(row)
                ds_rows.append({**row, "split": split})
    # a hand photo the curation dropped is a raw training photo all the same
    iid, rel = store.put(png(disc((200, 160, 130), seed=9)), "png")
    raw_rows.append({"image_id": iid, "path": rel, "label": "red", "product_id": "red-0",
                     "status": "active", "excluded_reason": "hand"})
    ext = tmp_path / "external"
    for name, colour in COLOURS.items():
        (ext / name.title()).mkdir(parents=True)  # "Red": matched to the class "red"
        for k in range(3):
            cv2.imwrite(str(ext / name.title() / f"{k}.jpg"), disc(colour, 300, seed=500 + k)[..., ::-1])
    (ext / "violet").mkdir()  # a class the model does not know
    cv2.imwrite(str(ext / "violet" / "v.png"), disc((150, 30, 200), seed=7)[..., ::-1])
    (ext / "Green" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    return data, pd.DataFrame(raw_rows), pd.DataFrame(ds_rows), ext


def test_external_photos_are_scored_as_predict_scores_them_beside_the_raw_photo_probe(project, tmp_path):
    data, raw, ds, ext = project
    p = params(data, evaluate={"external": [str(ext)], "contact_sheet": 4})
    info = {"classes": ["blue", "green", "red"], "image_size": 64}
    out = tmp_path / "out"
    out.mkdir()
    m = evaluate.external_test(colour_model(), info, p, out, tmp_path / "plots", raw=raw, ds=ds,
                               data_dir=data, store_root=data / "store")
    assert m["images"] == 3 * 3 + 1 + 1 and m["scored"] == 9 and m["unreadable"] == 1
    assert m["unknown_classes"] == {"violet": 1}
    assert m["top1"] == 1.0 and m["top3"] == 1.0 and m["cropped"] == 1.0
    b = m["baseline"]
    # 3 classes × 3 train products × 2 photos, plus the hand photo curation dropped
    assert b["train_images"] == 19 and b["classes"] == 3
    assert b["top1"] == 1.0 and m["vs_baseline_top1"] == 0.0
    rows = pd.read_csv(out / "external.csv")
    assert len(rows) == 11 and rows["error"].notna().sum() == 1
    assert set(rows.loc[rows["class"].notna() & rows["error"].isna(), "correct"]) == {True}
    assert rows.loc[rows["actual"] == "violet", "class"].isna().all()
    assert json.loads(rows.loc[0, "top3"])[0][0] == rows.loc[0, "predicted"]
    assert (tmp_path / "plots" / "external_confusion.csv").read_text().count("\n") == 10
    assert (out / "external_misclassified.png").exists()


def test_an_external_photo_gets_the_same_input_as_predict(project, tmp_path):
    from pipeline.stages import predict

    data, *_, ext = project
    p = params(data)
    f = next((ext / "Red").iterdir())
    via_predict, _ = predict.prepare(f, p, 64)
    probs, notes = evaluate.score_photos(colour_model(), pd.DataFrame({"path": [str(f)]}), p, 64,
                                         tta=False)
    direct = np.asarray(colour_model().predict_on_batch(via_predict[None]))
    assert np.allclose(probs, direct, atol=1e-6) and notes.loc[0, "cropped"]


def test_a_missing_external_folder_is_one_clear_error(tmp_path):
    from pipeline.dataset import DatasetError

    with pytest.raises(DatasetError, match="is not a folder"):
        evaluate.external_photos([str(tmp_path / "nope")])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no"):
        evaluate.external_photos([str(tmp_path / "empty")])


def test_the_probe_separates_what_a_line_separates_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 8)) + 4 * np.eye(8)[k] for k in range(3)])
    y = np.repeat(["a", "b", "c"], 40)
    p1, p2 = Probe.fit(x, y), Probe.fit(x, y)
    assert np.array_equal(p1.weights, p2.weights)
    assert (np.array(p1.classes)[p1.predict_proba(x).argmax(1)] == y).mean() > 0.95


def test_a_two_way_split_scores_val_and_says_so():
    assert evaluate.eval_split(pd.Series(["train", "val", None]), "test") == "val"
    assert evaluate.eval_split(pd.Series(["train", "test"]), "test") == "test"
    assert evaluate.eval_split(pd.Series(["train"]), "test") == "test"


def test_the_lbfgs_head_is_the_probe_with_the_penalty_val_prefers():
    """train.head_solver lbfgs: the Keras head (unit norm → dense → softmax) carries the
    probe's weights, so it answers exactly as the probe does; the penalty is the one of the
    grid with the lowest validation loss."""
    from pipeline.models import zoo
    from pipeline.stages.train import fit_probe_head

    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (3, 16)) * 3
    def draw(n):
        y = np.repeat(np.arange(3), n)
        return (centres[y] + rng.normal(0, 1.5, (len(y), 16))).astype(np.float32), y
    ftr, ytr = draw(30)
    fva, yva = draw(10)
    top = zoo.head(16, 3, 0.2, unit=True)
    row = fit_probe_head(top, ftr, ytr, fva, yva, 3, (1e-4, 1e-2, 1.0), balanced=True)
    assert row["l2"] in (1e-4, 1e-2, 1.0) and row["val/top1"] > 0.9
    keras_p = np.asarray(top.predict(fva, verbose=0))
    probe = Probe.fit(ftr, np.array([str(i) for i in ytr]), l2=row["l2"])
    assert np.allclose(keras_p, probe.predict_proba(fva), atol=1e-4)
