"""Certificates and other documents: lines of printed text on paper, ruled tables.

Gem lab reports, invoices and receipts share a layout no product photo has:
many short, dark, horizontal strokes of the same height (glyphs), which join
into text lines, on bright unsaturated paper, often with ruled lines. The
check counts such text lines at a fixed analysis size; textured stones (opal
play-of-colour, included quartz) make glyph-like blobs too, but not on paper
and not in rows. Ruled lines and a file-name hint raise the score a little.

rapidocr's offline text detector can give a second opinion on uncertain
images (``filter.ocr_second_opinion``); it is too slow (~30 ms) for every image.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from pipeline.checks import Check, Image, ramp, register
from pipeline.imageio import fit

logger = logging.getLogger(__name__)

SIDE = 640
_K15 = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15))
_K9x1 = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1))


def document_features(rgb: np.ndarray) -> dict[str, float]:
    """Text lines on paper and ruled lines, counted at 640 px."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    gray = fit(gray, SIDE, upscale=True)
    sat = fit(sat, SIDE, upscale=True)
    _h, w = gray.shape
    blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, _K15)
    dark = (blackhat > 40).astype(np.uint8)
    n, lab, st, _ = cv2.connectedComponentsWithStats(dark, 8)
    hh, ww, area = st[1:, 3], st[1:, 2], st[1:, 4]
    glyph = (hh >= 4) & (hh <= 30) & (ww <= 40) & (area >= 6)
    lut = np.zeros(n, np.uint8)
    lut[1:][glyph] = 1
    joined = cv2.dilate(lut[lab], _K9x1)
    _n2, _, st2, _ = cv2.connectedComponentsWithStats(joined, 8)
    lines = 0
    for x, y, bw, bh, _a in st2[1:]:
        if bw >= 30 and 4 <= bh <= 34 and bw >= 3 * bh:
            box = gray[y:y + bh, x:x + bw]
            if np.percentile(box, 80) > 140 and np.median(sat[y:y + bh, x:x + bw]) < 70:
                lines += 1
    edges = (blackhat > 25).astype(np.uint8)
    hor = cv2.morphologyEx(edges, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (w // 4, 1)))
    ruled = cv2.connectedComponentsWithStats(hor, 8)[0] - 1
    return {"glyphs": float(glyph.sum()), "text_lines": float(lines), "ruled_lines": float(ruled)}


@register
class Certificate(Check):
    """A certificate, report, invoice or other document (see the module doc)."""

    name = "certificate"
    hint_pattern = r"cert|report|gia|igi|grs|lab[-_]|invoice|receipt|document|scan"

    def score(self, image: Image) -> float:
        f = document_features(image.rgb)
        image.cache["document"] = f
        return min(1.0, ramp(f["text_lines"], 8.0, 20.0) + 0.25 * ramp(f["ruled_lines"], 2.0, 8.0)
                   * ramp(f["text_lines"], 3.0, 8.0))


_OCR = None


def ocr_text_boxes(rgb: np.ndarray) -> int:
    """Text boxes found by rapidocr's offline detector (models ship with the package)."""
    global _OCR
    if _OCR is None:
        from rapidocr import RapidOCR

        _OCR = RapidOCR()
    res = _OCR(rgb[..., ::-1], use_det=True, use_cls=False, use_rec=False)
    boxes = getattr(res, "boxes", None)
    return 0 if boxes is None else len(boxes)
