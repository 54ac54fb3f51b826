"""The hand models as the stages see them: a hand-presence score per image.

The models themselves (MediaPipe's palm detector and hand-landmark model on ONNX Runtime)
are in :mod:`pipeline.models.handpose`, the leaf library below core, as the embedding's
network is; a stage reaches them through here, as it reaches the embedding through
:mod:`pipeline.core.embedding`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.models import handpose as _impl
from pipeline.models.handpose import (
           LANDMARK,
           PALM,
           HandModelError,
           Region,
           hand_presence,
           model_bytes,
           model_files,
)

#: the code that computes the hand-presence score (a change to it rescores every image)
CODE = [Path(_impl.__file__), Path(__file__)]

__all__ = ["CODE", "LANDMARK", "PALM", "HandModelError", "Region", "hand_presence", "model_bytes",
           "model_files"]
