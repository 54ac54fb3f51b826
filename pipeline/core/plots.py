"""Figures people look at: matplotlib without a display, atomic PNG writes, a bundled font.

Example:
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> save_figure(fig, "data/plots/classes.png")
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import ImageFont

from pipeline.core.atomic import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, dest: str | Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG atomically and close it."""
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled scalable font (needs no system fonts)."""
    return ImageFont.load_default(size=size)
