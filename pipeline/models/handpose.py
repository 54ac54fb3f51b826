"""Is there a hand? MediaPipe's palm detector and hand-landmark model, on ONNX Runtime.

The junk head learns hands from generated fingers and a licensed folder of hands on
white; a real store's hand photo (a ring on a finger in a dark studio, earrings on a
palm, a hand at a face) is often neither. MediaPipe's *Hands* models were trained on
real hands in every pose and light, and ship under Apache-2.0 (see
``pipeline/weights/hands/SOURCE.json`` and ``LICENSE``; ``scripts/convert_hand_models.py``
rebuilds the ONNX files from the ``mediapipe==0.10.14`` wheel). The two-stage pipeline
is MediaPipe's own:

1. the **palm detector** (192 × 192, 2016 SSD anchors) proposes palms, each with a box
   and 7 keypoints (wrist, finger roots …), on the picture letterboxed into a square, and
   twice more with wider black margins (:data:`MARGINS`): a close-up hand that fills the
   frame is too big for the detector's largest anchors, and its palm may be out of the
   picture; the margin makes it smaller and gives the detector room to place the palm;
2. each proposal's hand region (the palm box turned upright by the wrist → middle-finger
   keypoints, moved towards the fingers and enlarged 2.6 ×, as MediaPipe does) is cut to
   224 × 224 and the **landmark model** scores the presence of a hand in it.

:func:`hand_presence` is the best presence over the proposals: near 1 where a hand is,
near 0 on a necklace, a stone or a lab report, even where the palm detector alone fires
on a moonstone's glow. The landmark model's verdict is what makes it a clean signal.

Cost (2-core CI machine, one thread): about 11 ms for a palm pass and 5 ms for each
landmark crop, 35 ms an image without a hand and 55 ms with one (``bench/embedding.py
--hands``). The filter runs it in its worker processes (``filter.hand_pose``), and not at
all where its vote could not count (:func:`pipeline.stages.filter.wants_pose`).

Example:
    >>> hand_presence(rgb)      # RGB uint8, any size
    0.987
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "hands"
PALM, LANDMARK = "palm_detection_full", "hand_landmark_full"
PALM_SIDE, LANDMARK_SIDE = 192, 224
#: palm proposals below this detector score are not looked at
MIN_PALM_SCORE = 0.3
#: at most this many palms per pass go to the landmark model
MAX_PALMS = 3
#: the picture letterboxed into a square of its longer side × these (see the module doc).
#: On ../shared/realdata hands-jewelry, presence ≥ 0.7: 0.71 at 1.0 alone, 0.84 with 1.6,
#: 0.89 with 2.2 too, 0.91 with 3.0 as well (no product photo reaches 0.7 at any of them;
#: 3.0 adds no hand the other votes miss, for one more pass)
MARGINS = (1.0, 1.6, 2.2)
#: MediaPipe's palm → hand region: enlarge, and move along the hand towards the fingers
ROI_SCALE, ROI_SHIFT = 2.6, -0.5
#: the palm route's presence at which a proposed :class:`Region` is not looked at: the
#: image's score is settled (the hand check's vote is full from 0.9, ``checks.hand.POSE_RAMP``)
SETTLED = 0.9
#: a proposed region's square is its box's longer side × this (the landmark model wants the
#: whole hand with a margin round it, as MediaPipe's 2.6 × palm box gives it)
REGION_SCALE = 1.5
#: the rotation that turns a hand upright when its wrist leaves the frame by this border
#: (the landmark model, like MediaPipe's pipeline, expects the fingers pointing up)
BORDER_ROTATION = {"bottom": 0.0, "left": math.pi / 2, "top": math.pi, "right": -math.pi / 2}

_SESSIONS: dict[str, object] = {}
_SESSIONS_PID = 0


class HandModelError(RuntimeError):
    """A shipped hand model is missing or its bytes are not the ones ``SOURCE.json`` names."""


@lru_cache(maxsize=1)
def source() -> dict:
    """The provenance record of the shipped models (hashes, tool versions)."""
    try:
        return json.loads((WEIGHTS / "SOURCE.json").read_text())
    except (OSError, ValueError) as exc:
        raise HandModelError(f"{WEIGHTS / 'SOURCE.json'} unreadable: {exc}") from exc


def model_bytes(name: str) -> bytes:
    """The ONNX file of ``name``, verified against its SHA-256 in ``SOURCE.json``."""
    path = WEIGHTS / f"{name}.onnx"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HandModelError(f"hand model {path} missing: {exc}") from exc
    try:
        want = str(source()["models"][name]["sha256"])
    except (KeyError, TypeError) as exc:
        raise HandModelError(f"{WEIGHTS / 'SOURCE.json'} names no sha256 for {name}") from exc
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise HandModelError(f"hand model {path} is not the shipped file (sha256 {got[:12]}…, "
                             f"SOURCE.json says {want[:12]}…); rebuild it with "
                             "scripts/convert_hand_models.py")
    return data


def model_files() -> list[Path]:
    """The files a hand-presence score depends on (the filter's cache key joins them)."""
    return [Path(__file__), WEIGHTS / "SOURCE.json", *(WEIGHTS / f"{n}.onnx" for n in (PALM, LANDMARK))]


def _session(name: str):
    """This process's session for ``name`` (one thread; never reused across a fork)."""
    global _SESSIONS_PID
    if os.getpid() != _SESSIONS_PID:
        _SESSIONS.clear()
        _SESSIONS_PID = os.getpid()
    if name not in _SESSIONS:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        _SESSIONS[name] = ort.InferenceSession(model_bytes(name), opts,
                                               providers=["CPUExecutionProvider"])
    return _SESSIONS[name]


@lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """The palm detector's 2016 anchor centres (x, y in 0…1), in its output order.

    MediaPipe's SSD anchors for this model: stride 8 (24 × 24 cells, 2 anchors each), then
    three layers of stride 16 that share their cells (12 × 12, 6 anchors each); every
    anchor is 1 × 1 (``fixed_anchor_size``), so only the centres matter.
    """
    out = []
    for cells, per in ((24, 2), (12, 6)):
        c = (np.arange(cells) + 0.5) / cells
        xx, yy = np.meshgrid(c, c)
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per, axis=0))
    return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class Palm:
    """A palm proposal in the square canvas's 0…1 coordinates."""

    score: float
    cx: float
    cy: float
    w: float
    h: float
    keypoints: np.ndarray  # 7 × 2


@dataclass(frozen=True)
class Region:
    """A hand region proposed by something other than the palm detector (pixels of the image).

    ``borders`` are the frame's sides the hand leaves by (its wrist or arm): the landmark
    crop is turned upright for each of them, and 45° either way.
    """

    cx: float
    cy: float
    side: float
    borders: tuple[str, ...]

    def rotations(self) -> list[float]:
        """The crop rotations to try, each once, in a fixed order."""
        out: list[float] = []
        for b in self.borders:
            for d in (0.0, -math.pi / 4, math.pi / 4):
                r = (BORDER_ROTATION[b] + d + math.pi) % (2 * math.pi) - math.pi
                if not any(abs(r - o) < 1e-6 for o in out):
                    out.append(r)
        return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -80.0, 80.0)))


def detect_palms(canvas: np.ndarray) -> list[Palm]:
    """Palm proposals on a square RGB canvas, best first, overlapping ones dropped."""
    x = cv2.resize(canvas, (PALM_SIDE, PALM_SIDE), interpolation=cv2.INTER_AREA)
    x = x.astype(np.float32)[None] / 255.0
    sess = _session(PALM)
    reg, cls = sess.run(None, {sess.get_inputs()[0].name: x})
    scores = _sigmoid(cls[0, :, 0])
    a = anchors()
    palms: list[Palm] = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < MIN_PALM_SCORE or len(palms) >= MAX_PALMS:
            break
        r = reg[0, i] / PALM_SIDE
        cx, cy, w, h = float(r[0] + a[i, 0]), float(r[1] + a[i, 1]), float(r[2]), float(r[3])
        if w <= 0 or h <= 0:
            continue
        if any(abs(cx - p.cx) < 0.5 * max(w, p.w) and abs(cy - p.cy) < 0.5 * max(h, p.h)
               for p in palms):
            continue  # the same palm seen by a neighbouring anchor
        palms.append(Palm(float(scores[i]), cx, cy, w, h, r[4:18].reshape(7, 2) + a[i]))
    return palms


def hand_crop(canvas: np.ndarray, palm: Palm) -> np.ndarray:
    """The 224 × 224 hand region of ``palm``, upright (MediaPipe's palm → hand rectangle)."""
    side_px = canvas.shape[0]
    (x0, y0), (x1, y1) = palm.keypoints[0], palm.keypoints[2]  # wrist, middle finger's root
    rot = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rot = (rot + math.pi) % (2 * math.pi) - math.pi
    cx = palm.cx - palm.h * ROI_SHIFT * math.sin(rot)
    cy = palm.cy + palm.h * ROI_SHIFT * math.cos(rot)
    k = max(palm.w, palm.h) * ROI_SCALE * side_px / LANDMARK_SIDE  # canvas px per crop px
    c, s = math.cos(rot) * k, math.sin(rot) * k
    half = LANDMARK_SIDE / 2
    m = np.array([[c, -s, cx * side_px - (c - s) * half],
                  [s, c, cy * side_px - (s + c) * half]], np.float32)
    return cv2.warpAffine(canvas, m, (LANDMARK_SIDE, LANDMARK_SIDE),
                          flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def region_crop(rgb: np.ndarray, region: Region, rot: float) -> np.ndarray:
    """The 224 × 224 square of ``region`` (× :data:`REGION_SCALE`), turned by ``rot``."""
    k = region.side * REGION_SCALE / LANDMARK_SIDE  # image px per crop px
    c, s = math.cos(rot) * k, math.sin(rot) * k
    half = LANDMARK_SIDE / 2
    m = np.array([[c, -s, region.cx - (c - s) * half],
                  [s, c, region.cy - (s + c) * half]], np.float32)
    return cv2.warpAffine(rgb, m, (LANDMARK_SIDE, LANDMARK_SIDE),
                          flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def presence(crop: np.ndarray) -> float:
    """The landmark model's hand-presence probability for a 224 × 224 RGB crop."""
    sess = _session(LANDMARK)
    outs = sess.run(["Identity_1"], {sess.get_inputs()[0].name: crop.astype(np.float32)[None] / 255.0})
    return float(np.asarray(outs[0]).ravel()[0])


def letterbox(rgb: np.ndarray, margin: float) -> np.ndarray:
    """``rgb`` centred on a black square of its longer side × ``margin``."""
    h, w = rgb.shape[:2]
    side = max(1, int(max(h, w) * margin))
    canvas = np.zeros((side, side, 3), np.uint8)
    y, x = (side - h) // 2, (side - w) // 2
    canvas[y:y + h, x:x + w] = rgb
    return canvas


def hand_presence(rgb: np.ndarray, regions: tuple[Region, ...] | list[Region] = ()) -> float:
    """The best hand-presence probability over the palm proposals (0 when none is proposed).

    ``regions`` are hand regions proposed from elsewhere (the hand check's skin region that
    enters from the frame's border, :func:`pipeline.stages.filter.checks.hand.skin_regions`): a close-up
    whose palm is out of the picture or hidden gives the palm detector nothing to find,
    while the landmark model, shown the region upright, knows the fingers. They are looked
    at only where the palm route has not settled the score (:data:`SETTLED`).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
        return 0.0
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    best = 0.0
    for margin in MARGINS:
        canvas = letterbox(rgb, margin)
        for palm in detect_palms(canvas):
            best = max(best, presence(hand_crop(canvas, palm)))
    for region in regions:
        for rot in region.rotations():
            if best >= SETTLED:
                return best
            best = max(best, presence(region_crop(rgb, region, rot)))
    return best
