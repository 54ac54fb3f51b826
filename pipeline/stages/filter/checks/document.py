"""Certificates and other documents: lines of printed text on paper, ruled tables.

Gem lab reports, invoices and receipts share a layout no product photo has:
many short, dark, horizontal strokes of the same height (glyphs), which join
into text lines, on bright unsaturated paper, often with ruled lines. The
check counts such text lines at a fixed analysis size; textured stones (opal
play-of-colour, included quartz) make glyph-like blobs too, but not on paper
and not in rows. Ruled lines and a file-name hint raise the score a little.

Counting text lines needs 640 px, which costs more than every other check
together, so a quick pass at 320 px comes first: small dark strokes on bright,
unsaturated surroundings (paper). Photos of stones have almost none (generated
gems: at most 20; 680 real gem photos: median 2), documents many (generated
certificates: at least 50; 25 real receipts: at least 93). Only images with
``QUICK_GATE`` or more get the 640 px pass, decoded again at that size.

rapidocr's offline text detector can give a second opinion on uncertain
images (``filter.ocr_second_opinion``); it is too slow (~30 ms) for every image.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from pipeline.core.imageio import fit
from pipeline.stages.filter.checks import Check, Image, ramp, register

logger = logging.getLogger(__name__)

SIDE = 640
QUICK_SIDE = 320
QUICK_GATE = 30
_K15 = cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15))
_K9x1 = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1))
_K7 = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))


def quick_strokes(rgb: np.ndarray) -> int:
    """Glyph-sized dark strokes on bright unsaturated surroundings, counted at 320 px."""
    gray = fit(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), QUICK_SIDE, upscale=True)
    sat = fit(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1], QUICK_SIDE, upscale=True)
    close = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, _K7)
    ink = (cv2.subtract(close, gray) > 30) & (close > 150) & (cv2.dilate(sat, _K7) < 90)
    _n, _lab, st, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), 8)
    hh, ww, area = st[1:, 3], st[1:, 2], st[1:, 4]
    return int(((hh >= 2) & (hh <= 16) & (ww <= 20) & (area >= 3)).sum())


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
    review_band = 0.2
    hint_pattern = r"cert|report|gia|igi|grs|lab[-_]|invoice|receipt|document|scan"

    def score(self, image: Image) -> float:
        """The handcrafted evidence or the learned head's probability, whichever is higher.

        The head (on the ImageNet embedding) recognises a lab report as a whole — the
        photo of the stone, the seal, the grid — where text is too small to count in a
        300 px thumbnail; the text-line count catches pages the head has not seen.
        """
        text = self.text_score(image)
        if image.junk_proba is None:
            return text
        return max(text, image.junk_proba["certificate"])

    def text_score(self, image: Image) -> float:
        """Text lines on paper and ruled lines (see the module doc), 0…1."""
        quick = quick_strokes(image.rgb)
        if quick < QUICK_GATE:
            image.cache["document"] = {"quick_strokes": float(quick)}
            return 0.0
        f = document_features(image.at_least(SIDE))
        f["quick_strokes"] = float(quick)
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
