"""Crop boxes against real backdrops: ``../shared/realdata/crop-pairs`` (see issue #14).

Each real gem photo ``photo/<Class>/x.jpg`` has a background-removed twin
``nobg/<Class>/x.jpg`` (rembg, on white). The truth box is the box of the twin's
non-white pixels (any channel below ``WHITE``, after a 3 px opening that drops
speckle). A twin is left out of the score, and listed, when its mask cannot be a
stone's: empty, a speck (< 0.5 % of the frame), the whole frame (> 97 %), the twin's
size differs from the photo's, or its pixels differ from the photo's inside its own
mask (mean > 25 levels: rembg keeps the object's pixels, so such a twin is rotated,
flipped or shifted; the ones looked at were). Twins found wrong by eye (a kept reflection
or shadow, a dropped near-white tip) are left out too, each with its reason
(:data:`WRONG_TWINS`).

Scores per photo: IoU of the crop stage's ``object_box`` (found exactly as the
stage finds it: ``find_box`` on the analysis image, scaled back) with the truth;
whether the stage would send it to review (``needs_review`` in the crop stage:
confidence below ``min_confidence`` or an issue it reviews); and the published
notebooks' baseline, the bounding box of all Canny edges (blur 3 px, thresholds
50/150) on the photo. Per class, and for the photos whose border is textured (the
border band's median local standard deviation above ``TEXTURED``) against plain.

Usage:
    .venv/bin/python -m bench.crop_pairs [--out bench/out/crop_pairs.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import param_overrides  # noqa: E402
from pipeline.core.config import load_params  # noqa: E402
from pipeline.core.imageio import load_rgb  # noqa: E402
from pipeline.stages import crop  # noqa: E402

PAIRS = ROOT.parent / "shared" / "realdata" / "crop-pairs"
WHITE = 235
TEXTURED = 4.0
MAX_TWIN_DIFF = 25.0
#: twins whose mask is wrong, found by eye (2026-12-02): every photo the stage scored under
#: IoU 0.95 (147 of 455) was looked at, the photo with its twin's box beside the twin, with
#: the stage's box hidden; the rest of those twins were right (the stage's box was wrong)
WRONG_TWINS = {
    "Alexandrite/alexandrite_2.jpg": "twin keeps the reflection below the stone",
    "Alexandrite/alexandrite_20.jpg": "twin keeps the reflection below the stone",
    "Alexandrite/alexandrite_29.jpg": "twin keeps the shadow below the stone",
    "Amethyst/amethyst_10.jpg": "twin keeps the reflection below the stone",
    "Amethyst/amethyst_12.jpg": "twin keeps the shadow below the stone",
    "Aquamarine/aquamarine_10.jpg": "twin keeps a patch of shadow beside the stone",
    "Aquamarine/aquamarine_21.jpg": "twin keeps backdrop at the lower left",
    "Diamond/diamond_20.jpg": "twin drops the stone's near-white tip",
    "Diamond/diamond_21.jpg": "twin drops the stone's near-white tip",
    "Peridot/peridot_2.jpg": "twin keeps the reflection below the stone",
    "Sapphire Blue/sapphire blue_28.jpg": "twin's mask misses a piece of the stone",
}


def iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def truth_box(nobg: np.ndarray) -> tuple[list[int] | None, str | None]:
    h, w = nobg.shape[:2]
    mask = (nobg.min(axis=2) < WHITE).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    if not mask.any():
        return None, "empty twin"
    x, y, bw, bh = cv2.boundingRect(mask)
    share = mask.sum() / (h * w)
    if share < 0.005:
        return None, f"speck ({share:.3%} of the frame)"
    if bw * bh > 0.97 * h * w:
        return None, "twin covers the whole frame"
    return [x, y, x + bw, y + bh], None


def canny_box(rgb: np.ndarray) -> list[int] | None:
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    edges = cv2.Canny(grey, 50, 150)
    if not edges.any():
        return None
    x, y, bw, bh = cv2.boundingRect(edges)
    return [x, y, x + bw, y + bh]


def border_texture(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (5, 5))
    sd = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0))
    h, w = grey.shape
    b = max(2, int(0.04 * min(h, w)))
    band = np.concatenate([sd[:b].ravel(), sd[-b:].ravel(), sd[:, :b].ravel(), sd[:, -b:].ravel()])
    return float(np.median(band))


def stage_box(rgb: np.ndarray, p) -> tuple[list[int] | None, bool, str]:
    """The crop stage's object box in original pixels and whether it goes to review."""
    small = crop.analysis_image(rgb, p.analysis_side)
    res = crop.find_box(small, p)
    f = small.shape[1] / rgb.shape[1]
    review = res.box is None or res.confidence < p.min_confidence or \
        (res.issue == "cut_by_border" and p.cut_by_border == "review") or res.issue == "several_objects"
    return crop.scale_box(res.object_box, f), review, res.issue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "crop_pairs.json"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a crop param (YAML value), e.g. --set blur_sigma=0.8")
    a = ap.parse_args()
    overrides = param_overrides(a.set, "crop")
    if not PAIRS.exists():
        print(f"{PAIRS} absent: nothing to measure")
        return
    p = load_params(ROOT / "params.yaml", overrides).crop
    rows, left_out = [], []
    for photo in sorted((PAIRS / "photo").glob("*/*")):
        twin = PAIRS / "nobg" / photo.parent.name / photo.name
        name = f"{photo.parent.name}/{photo.name}"
        if not twin.exists():
            left_out.append((name, "no twin"))
            continue
        rgb = load_rgb(photo).array
        nobg = load_rgb(twin).array
        if nobg.shape != rgb.shape:
            left_out.append((name, f"twin is {nobg.shape[1]}x{nobg.shape[0]}, "
                                   f"photo {rgb.shape[1]}x{rgb.shape[0]}"))
            continue
        truth, why = truth_box(nobg)
        if name in WRONG_TWINS:
            truth, why = None, f"looked at: {WRONG_TWINS[name]}"
        if truth is None:
            left_out.append((name, why))
            continue
        # rembg keeps the object's pixels: a twin that differs from the photo inside its own
        # mask is rotated, flipped or shifted against it (checked by eye on a sample)
        inside = nobg.min(axis=2) < WHITE
        mad = float(np.abs(rgb.astype(np.int16) - nobg.astype(np.int16))[inside].mean())
        if mad > MAX_TWIN_DIFF:
            left_out.append((name, f"twin does not match the photo (mean difference {mad:.0f} "
                                   "inside its mask)"))
            continue
        box, review, issue = stage_box(rgb, p)
        # how far each side of the box lies outside the truth's (px; negative: inside)
        slack = [truth[0] - box[0], truth[1] - box[1], box[2] - truth[2], box[3] - truth[3]] \
            if box is not None else None
        rows.append({"name": name, "class": photo.parent.name, "iou": iou(box, truth), "slack": slack,
                     "canny_iou": iou(canny_box(rgb), truth), "review": review, "issue": issue,
                     "textured": border_texture(rgb) > TEXTURED})

    def summary(sel: list[dict]) -> dict:
        if not sel:
            return {}
        ious = np.array([r["iou"] for r in sel])
        can = np.array([r["canny_iou"] for r in sel])
        return {"photos": len(sel), "median_iou": round(float(np.median(ious)), 4),
                "share_iou_ge_0.75": round(float((ious >= 0.75).mean()), 4),
                "to_review": round(float(np.mean([r["review"] for r in sel])), 4),
                "canny_median_iou": round(float(np.median(can)), 4),
                "canny_share_iou_ge_0.75": round(float((can >= 0.75).mean()), 4),
                # median px each side lies outside the truth (left, top, right, bottom)
                "median_slack_px": [float(v) for v in np.median(
                    [r["slack"] for r in sel if r["slack"] is not None], axis=0)]}

    out = {"all": summary(rows),
           "textured_border": summary([r for r in rows if r["textured"]]),
           "plain_border": summary([r for r in rows if not r["textured"]]),
           "per_class": {c: summary([r for r in rows if r["class"] == c])
                         for c in sorted({r["class"] for r in rows})},
           "issues": {k: sum(r["issue"] == k for r in rows) for k in sorted({r["issue"] for r in rows})},
           "worst": sorted((round(r["iou"], 3), r["name"], r["issue"]) for r in rows)[:15],
           "left_out": left_out, "photos": rows}
    print(json.dumps({k: out[k] for k in ("all", "textured_border", "plain_border", "issues")}, indent=2))
    print(f"left out ({len(left_out)}):", left_out)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
