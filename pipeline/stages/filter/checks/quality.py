"""Photo-quality checks: too small, blurry, too dark, too bright, low information.

Product photos are mostly plain background, so whole-image statistics mislead
(a sharp ring on white has a tiny mean gradient; a diamond on black has a low
mean brightness). Each check therefore looks at the strongest evidence in the
picture: the sharpest edges, the brightest and darkest tails.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.imageio import fit
from pipeline.stages.filter.checks import Check, Image, ramp, register


@register
class Blurry(Check):
    """Out of focus: even the strongest edges are soft.

    Measured as the 99.5th percentile of the Laplacian magnitude at a fixed
    analysis size (the object's outline and facets, not the flat background).
    """

    name = "blurry"
    sharp = 40.0    # score 0 at or above
    blurred = 8.0   # score 1 at or below

    def score(self, image: Image) -> float:
        g = fit(image.gray, 320)
        # |Laplacian| saturated to uint8 (anything ≥ 255 is sharp anyway): a histogram percentile
        lap = cv2.convertScaleAbs(cv2.Laplacian(g, cv2.CV_16S, ksize=3))
        hist = np.cumsum(cv2.calcHist([lap], [0], None, [256], [0, 256]).ravel())
        p = float(np.searchsorted(hist / max(1.0, float(hist[-1])), 0.995))
        image.cache["sharpness"] = p
        return 1.0 - ramp(p, self.blurred, self.sharp)


@register
class TooSmall(Check):
    """The original's shorter side, against what a 224 px crop needs."""

    name = "too_small"
    review_band = 0.0  # the size is known exactly: nothing to review
    min_side = 160   # score 1 at or below
    ok_side = 224    # score 0 at or above

    def score(self, image: Image) -> float:
        return 1.0 - ramp(min(image.orig_size), self.min_side, self.ok_side)


@register
class TooDark(Check):
    """Underexposed: even the brightest 2% of pixels are dark."""

    name = "too_dark"

    def score(self, image: Image) -> float:
        hi = image.gray_percentile(98)
        return 1.0 - ramp(hi, 40.0, 90.0)


@register
class TooBright(Check):
    """Blown out: even the darkest 0.5 % of pixels are near white.

    Not 2 %: a thin gold chain on white covers about 1 % of a catalog photo, so
    the 2nd percentile is background there (6 of 400 real necklace photos were
    flagged that way); a blown-out photo has lost its darks everywhere.
    """

    name = "too_bright"

    def score(self, image: Image) -> float:
        lo = image.gray_percentile(0.5)
        return ramp(lo, 228.0, 245.0)


@register
class LowInformation(Check):
    """A placeholder, a blank or a flat colour: almost nothing in the picture."""

    name = "low_information"

    def score(self, image: Image) -> float:
        spread = image.gray_percentile(99.5) - image.gray_percentile(0.5)
        image.cache["spread"] = spread
        # a small stone on a flat backdrop has a tiny histogram entropy but a wide
        # spread; a blank or placeholder has neither
        return 1.0 - ramp(spread, 8.0, 20.0)
