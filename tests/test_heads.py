"""Learned junk heads: fitting, the files they live in, the bank, and their vote in the checks."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.core.embedding import FEATURES
from pipeline.models.efficientnet_lite import EMBEDDING
from pipeline.stages.filter import checks
from pipeline.stages.filter import head as heads
from tests.helpers import BIN


def _blobs(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated clusters in embedding space: a known answer for the fit."""
    rng = np.random.default_rng(seed)
    centres = rng.random((3, FEATURES)) * 4
    y = np.arange(n) % 3
    return centres[y] + rng.normal(0, 0.3, (n, FEATURES)), y


def test_fit_is_deterministic_and_separates_what_is_separable():
    x, y = _blobs()
    a, b = heads.fit(x, y), heads.fit(x, y)
    assert a.to_bytes() == b.to_bytes()
    p = a.proba(x)
    assert p.shape == (60, 3) and np.allclose(p.sum(1), 1)
    assert (p.argmax(1) == y).all()


def test_the_average_and_the_peaks_are_normalised_each_on_its_own():
    """A vector's two halves count alike whatever their scale: peaks are several times
    larger than the average, and would otherwise drown it."""
    from pipeline.stages.filter.checks.junkhead import normalise

    rng = np.random.default_rng(5)
    v = np.concatenate([rng.random(EMBEDDING), 7 * rng.random(EMBEDDING)])
    n = normalise(np.stack([v, 2 * v]))
    assert n.shape == (2, FEATURES)
    np.testing.assert_allclose(np.linalg.norm(n[:, :EMBEDDING], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(n[:, EMBEDDING:], axis=1), 1.0)
    np.testing.assert_allclose(n[0], n[1])  # scale-free
    np.testing.assert_allclose(n[0, :EMBEDDING], v[:EMBEDDING] / np.linalg.norm(v[:EMBEDDING]))


def test_calibration_softens_but_never_sharpens():
    x, y = _blobs()
    h = heads.calibrate(heads.fit(x, y), x, y)
    assert h.temperature == 1.0  # separable: sharpening would win, and is not allowed
    noisy = y.copy()
    noisy[::4] = (noisy[::4] + 1) % 3  # a quarter mislabelled: the best temperature softens
    h2 = heads.calibrate(heads.fit(x, y, l2=1e-5), x, noisy)
    assert h2.temperature > 1.0


def test_head_files_are_checked(tmp_path):
    x, y = _blobs()
    h = heads.fit(x, y)
    path = heads.save_versioned(h, {"metrics": {}}, tmp_path)
    assert path.name.startswith("junk_head-") and path.with_suffix(".json").exists()
    back = heads.Head.load(path, verify_name=True)
    np.testing.assert_array_equal(back.weights, h.weights)
    with pytest.raises(heads.HeadError, match="no head file"):
        heads.Head.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(heads.HeadError, match="not a junk head"):
        heads.Head.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "small.npz", weights=np.zeros((3, 10)), bias=np.zeros(3), temperature=1.0,
             labels=np.array(heads.LABELS))
    with pytest.raises(heads.HeadError, match="2560-d"):
        heads.Head.load(tmp_path / "small.npz")
    # a head of the earlier layout (the average alone) is refused with what to do about it
    np.savez(tmp_path / "old.npz", weights=np.zeros((3, EMBEDDING)), bias=np.zeros(3), temperature=1.0,
             labels=np.array(heads.LABELS))
    with pytest.raises(heads.HeadError, match="train it again"):
        heads.Head.load(tmp_path / "old.npz")
    # a versioned head altered on disk no longer hashes to its name
    altered = heads.Head(h.weights * 2, h.bias, 1.0)
    path.write_bytes(altered.to_bytes())
    with pytest.raises(heads.HeadError, match="does not hash to its name"):
        heads.Head.load(path, verify_name=True)


def test_the_shipped_head_loads_and_comes_with_its_training_manifest():
    h = heads.Head.load()
    manifest = json.loads(heads.SHIPPED.with_suffix(".json").read_text())
    assert manifest["labels"] == list(heads.LABELS) and h.labels == heads.LABELS
    # it learnt only from what may be shipped: generated images and the licensed halves
    assert set(manifest["counts"]) <= {"generated", "licensed", "composite"}
    assert all(f["name"].split("/")[0] in heads.LICENSED for f in manifest["files"])
    assert not any(f["held_out"] is None for f in manifest["files"])


def test_the_shipped_head_knows_the_storefronts_junk_from_its_products():
    """Generated images the bank never held (another seed): products, lab reports, hands, 20
    of each in the storefront's plain look (the looks of real stores — worn rings, props,
    photographed reports — are the slow test below's)."""
    from pipeline.core.embedding import embed

    imgs, want = [], []
    for _name, label, rgb in heads.generated_bank(per_label=20, seed=991):
        if not _name.startswith(tuple(f"generated/{lab}/" for lab in heads.LABELS)):
            break  # the plain looks come first
        imgs.append(rgb)
        want.append(heads.LABELS.index(label))
    assert len(imgs) == 60 and sorted(set(want)) == [0, 1, 2]
    p = heads.Head.load().proba(embed(imgs))
    assert (p.argmax(1) == np.array(want)).mean() >= 0.95


def test_licensed_files_split_in_two_halves(tmp_path):
    for folder in ("hands", "documents", "gems"):
        (tmp_path / folder).mkdir()
        for i in range(20):
            (tmp_path / folder / f"{i}.jpg").write_bytes(b"x")
    train = heads.licensed_files(tmp_path, "train")
    held = heads.licensed_files(tmp_path, "held_out")
    assert {n for n, *_ in train}.isdisjoint({n for n, *_ in held})
    assert len(train) + len(held) == 40  # gems/ is not licensed: never in the bank
    assert {lab for _, lab, _ in train} == {"hand", "certificate"}


def test_examples_from_a_folder_and_from_decisions(tmp_path):
    from pipeline.core.blobstore import BlobStore
    from tests.helpers import photo_bytes

    (tmp_path / "ex" / "hand").mkdir(parents=True)
    (tmp_path / "ex" / "hand" / "a.jpg").write_bytes(photo_bytes(1))
    got = heads.examples_from_folder(tmp_path / "ex")
    assert [(e.label, e.source) for e in got] == [("hand", "examples")]
    (tmp_path / "ex" / "hands").mkdir()
    with pytest.raises(heads.HeadError, match="subfolders must be"):
        heads.examples_from_folder(tmp_path / "ex")
    with pytest.raises(heads.HeadError, match="no such folder"):
        heads.examples_from_folder(tmp_path / "nope")

    store = BlobStore(tmp_path / "store")
    ids = [store.put(photo_bytes(k), "jpg") for k in range(4)]
    manifest = pd.DataFrame({"image_id": [i for i, _ in ids], "path": [p for _, p in ids]})
    latest = pd.DataFrame({"image_id": [i for i, _ in ids],
                           "decision": ["accept", "reject", "reject", "relabel"],
                           "reason": [None, "hand", "blurry", None]})
    ex = heads.examples_from_decisions(latest, manifest, tmp_path / "store")
    # an accept is a product, a reject as hand is a hand; a blurry reject or a relabel says nothing
    assert [(e.label, e.image_id) for e in ex] == [("product", ids[0][0]), ("hand", ids[1][0])]
    # the bytes are checked against the id before they teach anything
    (tmp_path / "store" / ids[1][1]).write_bytes(b"swapped")
    assert heads._pixels(ex[1]) is None


@pytest.mark.slow  # trains on the generated bank: the full suite runs it, not --fast
def test_train_needs_every_class_and_reports_held_out_metrics():
    bank = heads.bank(per_label=10)
    t = time.perf_counter()
    with pytest.raises(heads.HeadError, match="every class"):
        heads.train([e for e in bank if e.label != "hand"], progress=False)
    assert time.perf_counter() - t < 1  # said before embedding anything
    # a class whose every picture is unreadable is missing too, once they are read
    gone = [heads.Example(e.name, e.label, "examples", path=Path("/nonexistent.jpg"))
            if e.label == "hand" else e for e in bank]
    with pytest.raises(heads.HeadError, match="could not be read"):
        heads.train(gone, progress=False)
    head, manifest = heads.train(bank, progress=False)
    m = manifest["metrics"]
    # two looks per class: plain renders, and as real stores show them (worn rings,
    # photographed reports; products twice: ring products and jewelry on display props)
    assert m["trained_on"] + m["held_out"] == 70 and m["held_out"] > 0
    assert manifest["counts"]["generated"] == {"product": 30, "certificate": 20, "hand": 20}
    names = [e.name for e in bank]
    assert sum(n.startswith("generated/worn/") for n in names) == 10
    assert sum(n.startswith("generated/photocert/") for n in names) == 10
    assert sum(n.startswith("generated/prop/") for n in names) == 10
    assert head.temperature >= 1.0


@pytest.mark.slow  # trains on the generated bank: the full suite runs it, not --fast
def test_the_shipped_head_knows_junk_as_real_stores_show_it():
    """Fingers wearing rings are hands, the same rings without a hand are products, so is
    jewelry on a display prop (hoops over a bar, rings in cushions, a bust), and
    photographed reports (booklets or beside a seal, close-ups under the gold seal, folder
    covers) are certificates (a seed the bank never held)."""
    from pipeline.core.embedding import embed
    from pipeline.demo.catalog import rng_for
    from pipeline.synthetic import junk, props, worn

    head = heads.Head.load()
    looks = {"hand": lambda r: worn.render_worn(r), "product": lambda r: worn.render_ring_product(r),
             "bar": lambda r: props.render_on_prop(r, "bar"),
             "cushions": lambda r: props.render_on_prop(r, "cushions"),
             "bust": lambda r: props.render_on_prop(r, "bust"),
             "certificate": lambda r: junk.photographed_certificate(r, "ruby", "X-1"),
             "closeup": lambda r: junk.report_closeup(r, "ruby", "X-1"),
             "folders": lambda r: junk.report_folders(r, "ruby", "X-1")}
    want = {"closeup": "certificate", "folders": "certificate", "bar": "product", "cushions": "product",
            "bust": "product"}
    for label, draw in looks.items():
        p = head.proba(embed([draw(rng_for(991, "look", label, k)) for k in range(12)]))
        assert (p.argmax(1) == heads.LABELS.index(want.get(label, label))).mean() >= 0.9, \
            (label, p.round(2))


def test_the_head_votes_in_the_checks():
    """A confident head flags a certificate; its hand vote counts only where there is skin."""
    from tests.helpers import gem_photo

    rgb = gem_photo(3)[0]
    img = checks.Image(rgb, rgb.shape[1::-1], "")
    assert checks.get("certificate").score(img) == 0.0
    voted = checks.Image(rgb, rgb.shape[1::-1], "", junk_proba={"product": 0.1, "certificate": 0.85,
                                                                 "hand": 0.9})
    assert checks.get("certificate").score(voted) == pytest.approx(0.85)
    # a gem on white: no skin region, so the hand vote does not count
    assert checks.get("hand").score(voted) == pytest.approx(0.0)
    skin = np.full((300, 300, 3), (200, 150, 120), np.uint8)
    skin[:, 200:] = 250  # a skin-coloured region entering from three borders
    gated = checks.Image(skin, (300, 300), "", junk_proba={"product": 0.1, "certificate": 0.0, "hand": 0.9})
    assert checks.get("hand").score(gated) == pytest.approx(0.9)
    # a head sure of a product clears what the shape cues alone would flag
    from pipeline.demo.catalog import rng_for
    from pipeline.synthetic import junk

    hand = junk.render_hand(rng_for(12, 0), "ruby")
    assert checks.get("hand").score(checks.Image(hand, hand.shape[1::-1], "")) >= 0.5
    sure = checks.Image(hand, hand.shape[1::-1], "", junk_proba={"product": 0.995, "certificate": 0.0,
                                                                 "hand": 0.005})
    assert checks.get("hand").score(sure) == pytest.approx(0.0, abs=0.01)


@pytest.mark.slow  # the CLI trains a head: the full suite runs it, not --fast
def test_train_head_cli_writes_a_versioned_head_a_project_can_use(tmp_path):
    """``gemcurate filter train-head`` with a folder of examples; the filter then runs on it."""
    from tests.helpers import ROOT, photo_bytes

    for name in ("params.yaml", "dvc.yaml"):  # a project (nothing scraped yet: no decisions)
        (tmp_path / name).write_text((ROOT / name).read_text())
    for label in heads.LABELS:
        (tmp_path / "ex" / label).mkdir(parents=True)
    (tmp_path / "ex" / "product" / "p.jpg").write_bytes(photo_bytes(2))
    out = subprocess.run([str(BIN / "gemcurate"), "filter", "train-head", "--examples", str(tmp_path / "ex"),
                          "--per-label", "6", "--no-progress",
                          "--out-dir", str(tmp_path / "heads")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    made = list((tmp_path / "heads").glob("junk_head-*.npz"))
    assert len(made) == 1 and "set filter.head:" in out.stdout and '"decisions_used": 0' in out.stdout
    manifest = json.loads(made[0].with_suffix(".json").read_text())
    assert manifest["counts"]["examples"] == {"product": 1}
    heads.Head.load(made[0], verify_name=True)
    bad = subprocess.run([str(BIN / "gemcurate"), "filter", "train-head", "--examples",
                          str(tmp_path / "missing"), "--no-decisions"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "no such folder" in bad.stderr
