"""Hand photos: a stone held between fingers or shown on a palm.

Skin colour alone "did not work" for the published projects, and it cannot:
morganite, imperial topaz, smoky quartz and rose gold are skin-coloured. The
check therefore asks for a skin-coloured region *shaped and lit like a hand*:

* large (a hand fills a good part of a close-up);
* entering from one or two image borders (wrist or arm), while not *being*
  the background (a beige backdrop touches every border);
* not convex: fingers and the gap between them leave the silhouette's convex
  hull partly empty, where a stone is nearly convex;
* smooth skin shading, without the strong texture of facets or metal links
  and without many specular highlights (polished gold, faceted stones).

Each cue is a soft 0–1 ramp; the score is their product, so one strong
counter-cue (a convex outline, a sparkling texture) clears an image.

Two learned votes join them where the filter computes them: the junk head on the
image's embedding (trusted as far as there is skin to see), and MediaPipe's hand
models (:mod:`pipeline.models.handpose`, ``filter.hand_pose``), trained on real hands:
a hand the landmark model is sure of is a hand whatever the backdrop, the light or the
jewel on it. The score is the strongest of them.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.hands import Region
from pipeline.core.imageio import fit
from pipeline.stages.filter.checks import Check, Image, ramp, register

#: the learned head's hand vote counts in full once the largest skin region covers this share
SKIN_GATE = (0.08, 0.16)
#: the shape cues count only as far as the head's hand probability reaches this
SHAPE_VETO = (0.02, 0.08)
#: … and the hand models' vote only as far as it reaches this: a head all but certain of a
#: product (generated morganites and a veined turquoise the landmark model scored 0.8) clears
#: it; every real hand photo the hand models found has a head probability of 2.5 % or more
POSE_VETO = (0.001, 0.01)
#: … except a hand the landmark model is all but sure of: from the first presence to the
#: second, the veto gives way wherever the head leaves a hand any chance (above
#: ``POSE_VETO[0]``, where the hand models run at all). The product photos the veto is for
#: reached 0.8; no product photo, real or generated, has reached 0.9 where the hand models ran
#: (a wrist wearing a bracelet the head gives 0.4 % does: presence 0.97)
POSE_SURE = (0.9, 0.95)
#: MediaPipe's hand presence → hand score (0 below the first, 1 above the second): on the
#: real product photos none reached 0.7, on real hands-with-jewelry 84 % passed 0.7
POSE_RAMP = (0.6, 0.9)
#: the skin region the hand models are shown (:func:`skin_regions`) covers at least this share
#: of the picture: where the shape cues' area ramp starts
SKIN_ROUTE_AREA = 0.06
SIDE = 128  # analysis size: shape cues do not need more, and texture is measured at a fixed scale


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels (YCrCb box plus hue/saturation limits), light to dark tones."""
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    cr, cb = ycc[..., 1], ycc[..., 2]
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return ((cr >= 133) & (cr <= 180) & (cb >= 77) & (cb <= 130) & ((h <= 25) | (h >= 170))
            & (s >= 25) & (s <= 190) & (v >= 40))


def _largest_skin(small: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest skin-coloured region of a small picture: its 0/1 mask and its stats row
    (x, y, width, height, area), or None where there is no skin."""
    m = skin_mask(small).astype(np.uint8)
    k3 = np.ones((3, 3), np.uint8)
    m = cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, k3), cv2.MORPH_CLOSE, k3)
    n, lab, st, _ = cv2.connectedComponentsWithStats(m, 8)
    if n <= 1:
        return None
    k = 1 + int(np.argmax(st[1:, 4]))
    return (lab == k).astype(np.uint8), st[k]


def _borders(x: int, y: int, bw: int, bh: int, w: int, h: int) -> tuple[str, ...]:
    """The frame's sides a box touches, in a fixed order."""
    return tuple(b for b, hit in (("bottom", y + bh >= h), ("left", x <= 0), ("top", y <= 0),
                                  ("right", x + bw >= w)) if hit)


def hand_features(rgb: np.ndarray) -> dict[str, float]:
    """Shape, position and texture of the largest skin-coloured region (at 128 px)."""
    small = fit(rgb, SIDE, upscale=True)
    h, w = small.shape[:2]
    found = _largest_skin(small)
    if found is None:
        return {"area": 0.0, "touch": 0, "border_skin": 0.0, "solidity": 1.0, "texture": 99.0,
                "specular": 0.0}
    comp, st = found
    x, y, bw, bh = (int(v) for v in st[:4])
    k3 = np.ones((3, 3), np.uint8)
    touch = len(_borders(x, y, bw, bh, w, h))
    border = np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]])
    cnts, _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(cnts, key=cv2.contourArea)
    hull_area = cv2.contourArea(cv2.convexHull(c))
    solidity = cv2.contourArea(c) / hull_area if hull_area > 0 else 1.0
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap = np.abs(cv2.Laplacian(gray, cv2.CV_32F))
    inner = cv2.erode(comp, k3) > 0
    texture = float(np.median(lap[inner])) if inner.sum() > 10 else 99.0
    # specular glints (polished metal, facets): near-white spots inside the silhouette. Not
    # "bright skin": pale skin in good light reaches V > 235 but keeps its saturation.
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    filled = np.zeros_like(comp)
    cv2.drawContours(filled, [c], -1, 1, -1)
    glint = (hsv[..., 2] > 235) & (hsv[..., 1] < 40) & (filled > 0)
    return {"area": float(st[4] / (h * w)), "touch": touch, "border_skin": float(border.mean()),
            "solidity": float(solidity), "texture": texture,
            "specular": float(glint.sum() / max(1, int(filled.sum())))}


def skin_regions(rgb: np.ndarray) -> list[Region]:
    """The hand region the hand models should look at beside the palm detector's proposals.

    The largest skin-coloured region, where it is as large as the shape cues ask of a hand
    (:data:`SKIN_ROUTE_AREA`) and enters from the frame's border as a hand does (by its
    wrist or arm): a close-up of fingers whose palm is out of the picture gives the palm
    detector nothing to find. A skin-coloured product (a pearl, a moonstone, a morganite on
    white) stands free of the border and is not proposed; the landmark model, not this
    proposal, decides whether a hand is there (:func:`pipeline.models.handpose.hand_presence`).
    """
    small = fit(rgb, SIDE, upscale=True)
    h, w = small.shape[:2]
    found = _largest_skin(small)
    if found is None:
        return []
    x, y, bw, bh, area = (int(v) for v in found[1])
    borders = _borders(x, y, bw, bh, w, h)
    if area / (h * w) < SKIN_ROUTE_AREA or not borders:
        return []
    sx, sy = rgb.shape[1] / w, rgb.shape[0] / h
    return [Region((x + bw / 2) * sx, (y + bh / 2) * sy, max(bw * sx, bh * sy), borders)]


@register
class Hand(Check):
    """A hand in the picture (see the module doc for the cues)."""

    name = "hand"
    review_band = 0.2
    hint_pattern = r"hand|held|holding|finger|palm|worn|on[-_]?model"

    def score(self, image: Image) -> float:
        """The shape cues' score, or the learned head's vote where there is skin to see.

        The head (on the ImageNet embedding) knows a hand wearing a ring on a dark or busy
        backdrop, where the shape cues fail; it is trusted only as far as the picture holds
        a sizeable skin-coloured region (:data:`SKIN_GATE`), so gold, wood or a beige
        backdrop that the head takes for skin does not flag a product on its own.
        """
        f = hand_features(image.rgb)
        image.cache["hand"] = f
        touch = {0: 0.0, 1: 1.0, 2: 1.0, 3: 0.3}.get(int(f["touch"]), 0.0)
        shape = (ramp(f["area"], 0.06, 0.14) * touch
                 * (1 - ramp(f["border_skin"], 0.12, 0.25))
                 * (1 - ramp(f["solidity"], 0.88, 0.95))
                 * (1 - ramp(f["texture"], 7.0, 10.0))
                 * (1 - ramp(f["specular"], 0.15, 0.4)))
        pose = 0.0 if image.hand_pose is None else ramp(image.hand_pose, *POSE_RAMP)
        if image.junk_proba is None:
            return max(shape, pose)
        # the head sure of a product (a gold watch, a citrine whose outline the shape cues
        # take for fingers) is the strong counter-cue that clears the shape's score
        p = image.junk_proba["hand"]
        veto = ramp(p, *POSE_VETO)
        if image.hand_pose is not None and p > POSE_VETO[0]:
            veto = max(veto, ramp(image.hand_pose, *POSE_SURE))
        return max(shape * ramp(p, *SHAPE_VETO), p * ramp(f["area"], *SKIN_GATE), pose * veto)
