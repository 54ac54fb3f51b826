"""Safe, fast image loading for the per-image curation stages.

Stages rarely need every pixel: perceptual hashes look at 32×32, the junk
checks at ~256 px and the crop finds its box at ~320 px and cuts the original.
JPEG can be decoded directly at 1/2, 1/4 or 1/8 scale (the DCT is simply
truncated), which is several times faster than a full decode; other formats are
decoded fully and reduced. Every load is guarded against decompression bombs
and reports broken files as :class:`ImageError` instead of crashing a stage.

Example:
    >>> img = load_rgb("data/store/ab/cd/abcd….jpg", max_side=256)
    >>> img.array.shape, img.orig_size
    ((192, 256, 3), (1024, 768))
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

logger = logging.getLogger(__name__)

# Truncated files are errors, never silently grey-padded.
ImageFile.LOAD_TRUNCATED_IMAGES = False
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """The file is not a decodable image (corrupt, truncated, a bomb, not an image)."""


@dataclass(frozen=True)
class Loaded:
    """A decoded image.

    Attributes:
        array: RGB uint8 array, possibly reduced.
        orig_size: (width, height) of the encoded image.
        scale: ``array`` width / original width (1.0 when not reduced).
    """

    array: np.ndarray
    orig_size: tuple[int, int]

    @property
    def scale(self) -> float:
        return self.array.shape[1] / self.orig_size[0]


def _open(src: str | Path | bytes, max_pixels: int) -> Image.Image:
    fp = io.BytesIO(src) if isinstance(src, bytes | bytearray) else src
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
            w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb: {exc}") from exc
    except FileNotFoundError:
        raise
    except Exception as exc:  # PIL raises many types for garbage
        raise ImageError(f"not a decodable image: {exc}") from exc
    if w * h > max_pixels:
        im.close()
        raise ImageError(f"too many pixels: {w}x{h} > {max_pixels}")
    return im


def load_rgb(src: str | Path | bytes, max_side: int | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, exact: bool = True) -> Loaded:
    """Decode an image to RGB, at reduced size when ``max_side`` allows.

    Args:
        src: A path or the encoded bytes.
        max_side: When given, the longer side of the result is at most this
            (and at least half of it for JPEG draft decoding, never upscaled).
        max_pixels: Refuse images whose header claims more pixels than this.
        exact: With ``False``, skip the final resize: the result is whatever
            the decoder gives for free (JPEG: the smallest DCT scale with a
            longer side ≥ ``max_side``; other formats: full size). Callers that
            need several sizes derive them from it with :func:`fit`.

    Returns:
        The decoded image and its original size.

    Raises:
        ImageError: The file is broken, truncated, not an image, or too big.
        FileNotFoundError: ``src`` is a path that does not exist.
    """
    im = _open(src, max_pixels)
    try:
        orig = im.size
        if max_side and max(orig) > max_side and im.format == "JPEG":
            # draft picks the largest DCT scale that keeps both sides >= the request
            f = max_side / max(orig)
            im.draft("RGB", (max(1, int(orig[0] * f)), max(1, int(orig[1] * f))))
        if im.mode not in ("RGB", "L"):
            if "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "P"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
        elif im.mode == "L":
            im = im.convert("RGB")
        else:
            im.load()
        arr = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except Exception as exc:  # truncated data surfaces at load time
        raise ImageError(f"cannot decode: {exc}") from exc
    finally:
        im.close()
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(f"unexpected decoded shape {arr.shape}")
    if exact and max_side and max(arr.shape[:2]) > max_side:
        arr = fit(arr, max_side)  # area filter: as good as PIL's, several times faster
    return Loaded(np.ascontiguousarray(arr), orig)


def fit(img: np.ndarray, side: int, upscale: bool = False) -> np.ndarray:
    """Resize so the longer side is ``side`` (area filter for big reductions; up only if ``upscale``)."""
    import cv2

    h, w = img.shape[:2]
    f = side / max(h, w)
    if f >= 1 and not upscale:
        return img
    size = (max(1, round(w * f)), max(1, round(h * f)))
    # area averaging against aliasing when shrinking a lot; above 1/2 linear is as good and 5× faster
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 0.5 else cv2.INTER_LINEAR)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as uint8 (what PIL's ``convert('L')`` computes)."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
