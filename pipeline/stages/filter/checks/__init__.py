"""The registry of image checks used by the filter stage.

A check is a small class with a ``name`` and ``score(image) -> float``: 0 means
"certainly fine", 1 "certainly junk of this kind". The filter stage turns
scores into ``<check>_score`` / ``is_<check>`` columns with the threshold and
uncertainty band from ``params.yaml`` (``filter.checks.<name>``), so tuning a
check never needs a code change. Adding one is a class and a decorator; it runs
with its class defaults until ``params.yaml`` says otherwise:

Example:
    >>> @register
    ... class Overexposed(Check):
    ...     name = "overexposed"
    ...     threshold, review_band = 0.5, 0.1
    ...     def score(self, image: Image) -> float:
    ...         return float((image.gray > 250).mean())

Registration order is the precedence of ``excluded_reason`` when several checks
flag one image: junk (certificate, hand) before photo quality.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

REGISTRY: dict[str, type[Check]] = {}


@dataclass
class Image:
    """What a check looks at: the decoded (reduced) image plus context.

    Attributes:
        rgb: RGB uint8 array, longer side at most ``analysis_side`` px.
        orig_size: (width, height) of the original file.
        url: Source URL (file-name hints).
        cache: Intermediate results shared between checks.
        junk_proba: The learned head's vote (see :mod:`pipeline.stages.filter.head`), or None.
        hand_pose: The hand-landmark model's presence score, or None.
        reload: ``reload(side)`` decodes the original again with the longer
            side at most ``side`` (the filter stage passes one, so a check that
            needs detail, like the document check, can ask for it on the few
            images that deserve it instead of every image paying for it).
    """

    rgb: np.ndarray
    orig_size: tuple[int, int]
    url: str = ""
    cache: dict = field(default_factory=dict)
    reload: Callable[[int], np.ndarray] | None = None
    #: the learned junk head's probabilities (``product``, ``certificate``, ``hand``) from the
    #: image's embedding, when the filter runs with ``filter.embedding`` (else None)
    junk_proba: dict[str, float] | None = None
    #: MediaPipe's hand-presence probability (:mod:`pipeline.models.handpose`), when the
    #: filter runs with ``filter.hand_pose`` (else None)
    hand_pose: float | None = None

    def at_least(self, side: int) -> np.ndarray:
        """The image with a longer side of ``side`` px or the original's, whichever is smaller."""
        have = max(self.rgb.shape[:2])
        if have >= side or have >= max(self.orig_size) or self.reload is None:
            return self.rgb
        key = f"_rgb@{side}"
        if key not in self.cache:
            self.cache[key] = self.reload(side)
        return self.cache[key]

    @cached_property
    def gray_hist(self) -> np.ndarray:
        """Cumulative share of gray levels 0…255 (fast percentiles of a uint8 image)."""
        hist = cv2.calcHist([self.gray], [0], None, [256], [0, 256]).ravel()
        return np.cumsum(hist) / max(1.0, float(hist.sum()))

    def gray_percentile(self, q: float) -> float:
        """The ``q``-th percentile of the gray levels (nearest rank)."""
        return float(np.searchsorted(self.gray_hist, q / 100.0))

    @cached_property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def hsv(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV)

    @cached_property
    def border(self) -> np.ndarray:
        """Pixels of a 4%-wide frame around the image (the background, usually)."""
        h, w = self.gray.shape
        b = max(2, int(0.04 * min(h, w)))
        return np.concatenate([self.rgb[:b].reshape(-1, 3), self.rgb[-b:].reshape(-1, 3),
                               self.rgb[:, :b].reshape(-1, 3), self.rgb[:, -b:].reshape(-1, 3)])

    @cached_property
    def filename(self) -> str:
        return hint_name(self.url)


def hint_name(url: str) -> str:
    """The part of a URL that file-name hints read: its last path segment, lower case."""
    return re.sub(r"[?#].*$", "", url or "").rsplit("/", 1)[-1].lower()


class Check:
    """Base class: subclasses set ``name`` and implement :meth:`score`."""

    name: str = ""
    #: defaults for ``filter.checks.<name>`` in params.yaml
    enabled: bool = True
    threshold: float = 0.5
    review_band: float = 0.1
    #: a hint in the file name / URL adds this to the score (never flags on its own)
    hint_pattern: str | None = None
    hint_weight: float = 0.15

    def score(self, image: Image) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def hint(self, image: Image) -> float:
        if not self.hint_pattern:
            return 0.0
        return 1.0 if re.search(self.hint_pattern, image.filename) else 0.0

    def final_score(self, image: Image) -> float:
        """The visual score, nudged by a file-name hint when the picture already looks suspect."""
        s = float(np.clip(self.score(image), 0.0, 1.0))
        if s >= self.hint_weight:
            s = min(1.0, s + self.hint_weight * self.hint(image))
        return s


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: add ``cls`` to :data:`REGISTRY` under ``cls.name``."""
    if not cls.name or not re.fullmatch(r"[a-z][a-z0-9_]*", cls.name):
        raise ValueError(f"check {cls.__name__} needs a snake_case name")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> Check:
    """An instance of the registered check ``name``."""
    if name not in REGISTRY:
        raise KeyError(f"unknown check {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]()


def ramp(x: float, lo: float, hi: float) -> float:
    """0 below ``lo``, 1 above ``hi``, linear in between."""
    if hi == lo:
        return float(x >= hi)
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


# importing the modules registers their checks
from pipeline.stages.filter.checks import document, hand, quality  # noqa: E402,F401
