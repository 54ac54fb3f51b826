"""Learned junk heads: ``product`` / ``certificate`` / ``hand`` from the shared embedding.

A multinomial logistic regression on the EfficientNet-Lite0 vector
(:mod:`pipeline.core.embedding`: the average-pooled embedding and the max-pooled peaks,
each L2-normalised), fitted by L-BFGS with an L2 penalty: seeded, deterministic, a
3 × 2560 matrix. Its probabilities are calibrated by one
temperature fitted on held-out rows of the bank (:class:`pipeline.stages.filter.checks.junkhead.Head`
is the fitted head). The filter's certificate and hand checks combine its probabilities
with their handcrafted evidence (:mod:`.checks.document`, :mod:`.checks.hand`).

The bank (what the shipped head learned from) is only what may be shipped:

* generated storefront images (:mod:`pipeline.demo`): product photos, lab-report
  certificates (flat, and photographed: booklets, beside a seal, close-ups under the seal,
  folder covers) and hands (holding a stone, and fingers wearing rings,
  :mod:`pipeline.synthetic.worn`, with the same rings as product photos), jewelry on
  display props as products (:mod:`pipeline.synthetic.props`), each also as
  made variants (thumbnails of 300–600 px, JPEG re-encodes, crops, borders, small
  rotations), drawn from a fixed seed;
* the permissively licensed folders of the real samples, when present: ``hands/``
  (Apache-2.0) and ``documents/`` (MIT), the half of each whose file name hashes even
  (the other half is kept out of training, to score on).

``pipeline/weights/junk_head.npz`` ships with the package with its training manifest
(``junk_head.json``: the bank's files and hashes, counts, held-out metrics).
``gemcurate filter train-head`` fits a project's own head on the same bank plus the
project's labelled examples: a folder per class and every annotator decision (a reject
as certificate or hand is that class, an accept is a product).

Example:
    >>> head = Head.load()                      # the shipped head
    >>> p = head.proba(embeddings)              # N × 3, columns LABELS
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.probe import fit_softmax
from pipeline.stages.filter.checks.junkhead import (
    FEATURES,
    LABELS,
    SHIPPED,
    Head,
    HeadError,
    normalise,
    softmax,
)

__all__ = ["LABELS", "SHIPPED", "Head", "HeadError", "bank", "calibrate", "fit", "normalise",
           "save_versioned", "softmax", "train"]

logger = logging.getLogger(__name__)

VARIANTS = ("plain", "thumb", "jpeg", "crop", "border", "rotate")


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, sample_weight: np.ndarray | None = None,
        max_iter: int = 500) -> Head:
    """Multinomial logistic regression by L-BFGS (deterministic: no randomness at all)."""
    w, b = fit_softmax(normalise(x), y, len(LABELS), l2=l2, sample_weight=sample_weight,
                       max_iter=max_iter)
    return Head(w.astype(np.float32), b.astype(np.float32))


def calibrate(head: Head, x: np.ndarray, y: np.ndarray) -> Head:
    """Fit the temperature on held-out rows (minimum log loss over a fixed grid).

    Never below 1: held-out bank rows are easier than real photos (generated pictures are
    separable), so sharpening would push real photos' probabilities to 0 or 1, where the
    review band cannot see them.
    """
    z = head.logits(x)
    best = min(np.geomspace(1.0, 8.0, 31),
               key=lambda t: -np.log(np.clip(softmax(z / t)[np.arange(len(y)), y], 1e-12, None)).mean())
    head.temperature = float(best)
    return head


# --------------------------------------------------------------------------- the bank
def variant(rng: np.random.Generator, rgb: np.ndarray, kind: str) -> np.ndarray:
    """A made variant of an image, as stores show the same kind of picture."""
    h, w = rgb.shape[:2]
    if kind == "thumb":
        side = int(rng.integers(300, 601))
        f = side / max(h, w)
        return cv2.resize(rgb, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
    if kind == "jpeg":
        _, enc = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 70))])
        return cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()
    if kind == "crop":
        f = rng.uniform(0.6, 0.9)
        ch, cw = int(h * f), int(w * f)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return rgb[y0:y0 + ch, x0:x0 + cw].copy()
    if kind == "border":
        b = int(min(h, w) * rng.uniform(0.03, 0.15))
        colour = [int(c) for c in rng.integers(0, 256, 3)]
        return cv2.copyMakeBorder(rgb, b, b, b, b, cv2.BORDER_CONSTANT, value=colour)
    if kind == "rotate":
        ang = float(rng.uniform(-12, 12)) if rng.random() < 0.7 else float(rng.choice([90, 180, 270]))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, 1.0)
        return cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return rgb


def generated_bank(per_label: int = 240, seed: int = 7) -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, label, RGB) of generated storefront images and their variants (deterministic):
    ``per_label`` of each class in each of two looks (plain renders; as real stores show them)."""
    from pipeline.synthetic import jewelry, junk, props, worn
    from pipeline.synthetic.gems import GEM_CLASSES, draw_gem, plan_gem, plan_stone
    from pipeline.synthetic.seeds import rng_for

    gems = list(GEM_CLASSES)
    for i in range(per_label):
        gem = gems[i % len(gems)]
        kind = VARIANTS[i % len(VARIANTS)]
        for label in LABELS:
            rng = rng_for(seed, "bank", label, i)
            if label == "product":
                pick = i % 20
                if pick < 8:
                    img = draw_gem(plan_gem(rng, gem, plan_stone(rng, gem)))
                elif pick < 15:
                    img = jewelry.render_jewelry(rng, jewelry.KINDS[i % len(jewelry.KINDS)])
                else:
                    img = jewelry.gem_on_backdrop(rng, gem)
            elif label == "certificate":
                img = junk.render_certificate(rng, gem, f"BANK-{i:04d}")
            else:
                img = junk.render_hand(rng, gem)
            yield f"generated/{label}/{i:04d}-{kind}", label, variant(rng, img, kind)
    # as real stores show them: fingers wearing rings, and the same rings as product photos
    # without a hand (so the ring or a skin-coloured backdrop is not what makes a hand);
    # jewelry on display props (hoops over a bar, rings in cushions, a necklace on a bust);
    # lab reports photographed: folded booklets, beside the lab's seal, close-ups under the
    # gold seal with the stone on it, folder covers fanned out beside the jewel's box
    extra = (("worn", "hand", lambda r, i: worn.render_worn(r)),
             ("ringprod", "product", lambda r, i: worn.render_ring_product(r)),
             ("prop", "product", lambda r, i: props.render_on_prop(r)),
             ("photocert", "certificate", lambda r, i: junk.photographed_certificate(r, "ruby", f"P-{i}")))
    for i in range(per_label):
        kind = VARIANTS[i % len(VARIANTS)]
        for name, label, draw in extra:
            rng = rng_for(seed, "bank", name, i)
            yield f"generated/{name}/{i:04d}-{kind}", label, variant(rng, draw(rng, i), kind)


def hand_composite(rng: np.random.Generator, hand: np.ndarray) -> np.ndarray:
    """A hand photographed on white, as jewelry stores show hands: close up, entering from
    an edge, on a dark, textured or coloured backdrop, wearing a ring (a made variant of a
    licensed photo, so it may be learnt from)."""
    from pipeline.synthetic import jewelry

    h, w = hand.shape[:2]
    from pipeline.stages.filter.checks.hand import skin_mask

    mask = skin_mask(hand).astype(np.uint8)
    k = np.ones((max(3, min(h, w) // 40),) * 2, np.uint8)
    mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k)
    n, lab, st, _ = cv2.connectedComponentsWithStats(mask, 8)
    if n <= 1:
        return hand
    k = 1 + int(np.argmax(st[1:, 4]))
    m = cv2.GaussianBlur((lab == k).astype(np.float32), (0, 0), 1.5)
    out = hand.astype(np.float32)
    tone = rng.uniform([0.55, 0.5, 0.45], [1.05, 1.0, 1.0]).astype(np.float32)  # other skin tones, warm light
    out = np.clip(out * tone, 0, 255)
    ys, xs = np.nonzero(m > 0.5)
    if len(xs) and rng.random() < RING_SHARE:
        j = int(rng.integers(len(xs)))
        cx, cy = float(xs[j]), float(ys[j])
        r = min(h, w) * rng.uniform(0.05, 0.1)
        metal = np.array(jewelry.METALS[str(rng.choice(list(jewelry.METALS)[:4]))], np.float32)
        jewelry._band(out, (cx, cy), (r, r * 0.45), float(rng.uniform(-60, 60)), max(2, int(r * 0.35)), metal)
        jewelry._paste_stone(rng, out, cx, cy - r * 0.3, int(r * rng.uniform(1.0, 1.8)))
    back = jewelry.backdrop(rng, w, h, str(rng.choice(["velvet", "wood", "fabric", "marble", "plain"])))
    if rng.random() < 0.4:
        back *= rng.uniform(0.15, 0.5)  # dark studio backdrop
    img = back * (1 - m[..., None]) + out * m[..., None]
    # closer: the hand fills the frame and leaves it at an edge
    f = rng.uniform(0.55, 0.85)
    ch, cw = int(h * f), int(w * f)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return np.clip(img[y0:y0 + ch, x0:x0 + cw], 0, 255).astype(np.uint8)


LICENSED = {"hands": "hand", "documents": "certificate"}
RING_SHARE = 0.0


def in_training_half(name: str) -> bool:
    """The licensed real files the shipped head learns from: those whose name hashes even."""
    return hashlib.sha256(name.encode()).digest()[0] % 2 == 0


def licensed_files(root: str | Path, half: str = "train") -> list[tuple[str, str, Path]]:
    """(name, label, path) of the licensed real samples in one half (``train`` or ``held_out``)."""
    root = Path(root)
    out = []
    for folder, label in LICENSED.items():
        for f in sorted((root / folder).glob("*")) if (root / folder).is_dir() else []:
            if f.is_file() and not f.name.startswith("."):
                name = f"{folder}/{f.name}"
                if in_training_half(name) == (half == "train"):
                    out.append((name, label, f))
    return out


# --------------------------------------------------------------------------- training
@dataclass
class Example:
    """One training image of the bank: where it comes from, its label, its pixels or file."""

    name: str
    label: str
    source: str  # generated, licensed, composite, examples, decisions
    rgb: np.ndarray | None = None
    path: Path | None = None
    image_id: str | None = None
    weight: float = 1.0


def _held_out(name: str, share: float = 0.2) -> bool:
    return hashlib.sha256(("holdout|" + name).encode()).digest()[1] < 256 * share


def bank(per_label: int = 240, realdata: str | Path | None = None, seed: int = 7,
         composite_weight: float = 0.25) -> list[Example]:
    """The shippable bank: generated images, and the licensed real halves with their composites."""
    from pipeline.core.imageio import ImageError, load_rgb

    out = [Example(n, lab, "generated", rgb=im) for n, lab, im in generated_bank(per_label, seed)]
    if realdata is not None:
        rng = np.random.default_rng(seed)
        for name, label, f in licensed_files(realdata, "train"):
            try:
                rgb = load_rgb(f, max_side=400).array
            except (ImageError, OSError):
                continue
            out.append(Example(name, label, "licensed", rgb=rgb))
            if label == "hand":
                for r in range(4):
                    out.append(Example(f"{name}#composite{r}", label, "composite",
                                       rgb=hand_composite(rng, rgb), weight=composite_weight))
    return out


def examples_from_folder(folder: str | Path) -> list[Example]:
    """``<folder>/<label>/*`` for label in :data:`LABELS` (a project's own labelled images)."""
    folder = Path(folder)
    unknown = [d.name for d in folder.iterdir() if d.is_dir() and d.name not in LABELS] \
        if folder.is_dir() else []
    if not folder.is_dir():
        raise HeadError(f"--examples {folder}: no such folder")
    if unknown:
        raise HeadError(f"--examples {folder}: subfolders must be {', '.join(LABELS)}; found {unknown}")
    return [Example(f"examples/{d.name}/{f.name}", d.name, "examples", path=f)
            for d in sorted(folder.iterdir()) if d.is_dir()
            for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")]


def examples_from_decisions(latest, manifest, store_root: str | Path) -> list[Example]:
    """Annotator decisions as examples: a reject as certificate or hand is that class, an
    accept is a product (the image as the store served it, verified by its id)."""
    if latest is None or not len(latest) or manifest is None or not len(manifest):
        return []
    paths = manifest.dropna(subset=["path"]).drop_duplicates("image_id").set_index("image_id")["path"]
    out = []
    for row in latest.itertuples(index=False):
        label = {"accept": "product"}.get(row.decision)
        if row.decision == "reject" and row.reason in ("certificate", "hand"):
            label = row.reason
        if label is None or row.image_id not in paths.index:
            continue
        out.append(Example(f"decisions/{row.image_id[:16]}", label, "decisions",
                           path=Path(store_root) / paths[row.image_id], image_id=row.image_id))
    return out


def _pixels(ex: Example) -> np.ndarray | None:
    from pipeline.core.blobstore import BlobProblem, read_verified
    from pipeline.core.imageio import ImageError, load_rgb

    if ex.rgb is not None:
        return ex.rgb
    try:
        data = read_verified(str(ex.path), ex.image_id) if ex.image_id else Path(ex.path).read_bytes()
        return load_rgb(data, max_side=400).array
    except (BlobProblem, ImageError, OSError) as exc:
        logger.warning("train-head: skipping %s (%s)", ex.name, exc)
        return None


#: logits taken from each junk class (× the temperature): stores show far more products than
#: junk, and a product wrongly excluded costs more than a junk image sent on (the review band
#: still sees it). Set on real photos (``../shared/realdata``, never learnt from): a ring on a
#: finger and a ring product photo are close for an ImageNet embedding, and the hand's 2.5
#: keeps jewelry products under 1 % flagged; lab reports lie far from products, so the
#: certificate's can be larger still (3.75: every real certificate still scores ≥ 0.8,
#: phone screenshots of a shop's post are no longer taken for documents).
PRIOR_SHIFT = {"certificate": 3.75, "hand": 2.5}


# long: the head's training steps in order (features, split, fit, held-out metrics, manifest of what
# it learnt from)
def train(examples: list[Example], l2: float = 1e-3, prior_shift: float | dict[str, float] | None = None,
          embeddings=None, progress: bool = True) -> tuple[Head, dict]:
    """Fit, calibrate and measure a head on ``examples`` (deterministic).

    A fifth of the examples (by a hash of their name) is held out: the temperature is
    fitted on it and the metrics are measured on it. ``prior_shift`` (one number for every
    junk class, or one per class; default :data:`PRIOR_SHIFT`) is taken from the junk logits.
    """
    if prior_shift is None:
        prior_shift = PRIOR_SHIFT
    shifts = prior_shift if isinstance(prior_shift, dict) else {lab: prior_shift for lab in LABELS[1:]}
    from tqdm import tqdm

    from pipeline.core.embedding import embed

    given = sorted({ex.label for ex in examples})
    if given != sorted(LABELS):  # before minutes of embedding, not after
        raise HeadError(f"train-head: need examples of every class {', '.join(LABELS)}; have {given}")
    keep, vecs = [], []
    cached = {}
    if embeddings is not None:
        ids = [ex.image_id for ex in examples if ex.image_id]
        got, found = embeddings.get(ids)
        cached = {i: v for i, v, f in zip(ids, got, found, strict=True) if f}
    batch: list[tuple[Example, np.ndarray]] = []

    def flush() -> None:
        if batch:
            vecs.extend(embed([im for _, im in batch]))
            keep.extend(ex for ex, _ in batch)
            batch.clear()

    for ex in tqdm(examples, desc="train-head", unit="img", disable=not progress):
        if ex.image_id in cached:
            keep.append(ex)
            vecs.append(cached[ex.image_id])
            continue
        rgb = _pixels(ex)
        if rgb is not None:
            batch.append((ex, rgb))
        if len(batch) >= 32:
            flush()
    flush()
    x = np.stack(vecs) if vecs else np.zeros((0, FEATURES), np.float32)
    y = np.array([LABELS.index(ex.label) for ex in keep], int)
    present = sorted({ex.label for ex in keep})
    if present != sorted(LABELS):  # a class whose every picture was unreadable
        raise HeadError(f"train-head: need examples of every class {', '.join(LABELS)}; have {present} "
                        "(the others' pictures could not be read)")
    held = np.array([_held_out(ex.name) for ex in keep])
    w = np.array([ex.weight for ex in keep])
    head = fit(x[~held], y[~held], l2=l2, sample_weight=w[~held])
    head = calibrate(head, x[held], y[held])
    head.bias = (head.bias - np.array([0.0] + [float(shifts.get(lab, 0.0)) for lab in LABELS[1:]])
                 * head.temperature).astype(np.float32)
    pred = head.proba(x[held]).argmax(1)
    src = np.array([ex.source for ex in keep])
    metrics = {"held_out": int(held.sum()), "trained_on": int((~held).sum()),
               "held_out_accuracy": round(float((pred == y[held]).mean()), 4) if held.any() else None,
               "held_out_recall": {lab: round(float((pred[y[held] == k] == k).mean()), 4)
                                   for k, lab in enumerate(LABELS) if (y[held] == k).any()},
               "temperature": round(head.temperature, 4)}
    counts: dict[str, dict[str, int]] = {}
    for ex in keep:
        counts.setdefault(ex.source, {}).setdefault(ex.label, 0)
        counts[ex.source][ex.label] += 1
    digest = hashlib.sha256()
    files = []
    for ex in keep:
        if ex.source in ("licensed", "examples"):
            files.append({"name": ex.name, "label": ex.label, "held_out": bool(_held_out(ex.name)),
                          "sha256": hashlib.sha256(Path(ex.path).read_bytes()).hexdigest()
                          if ex.path else None})
        elif ex.rgb is not None:
            digest.update(ex.name.encode())
            digest.update(np.ascontiguousarray(ex.rgb).tobytes())
    manifest = {"labels": list(LABELS), "counts": counts, "metrics": metrics,
                "params": {"l2": l2, "prior_shift": dict(shifts)},
                "generated_sha256": digest.hexdigest(), "files": files,
                "by_source_held_out": {s: int((held & (src == s)).sum()) for s in sorted(set(src))}}
    return head, manifest


def save_versioned(head: Head, manifest: dict, folder: str | Path) -> Path:
    """Write ``<folder>/junk_head-<sha12>.npz`` (+ ``.json``): a new head is a new name."""
    sha = hashlib.sha256(head.to_bytes()).hexdigest()[:12]
    path = Path(folder) / f"junk_head-{sha}.npz"
    head.save(path, manifest)
    return path
