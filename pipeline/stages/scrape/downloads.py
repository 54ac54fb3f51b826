"""Every download is checked before it counts as an image.

Status and size are checked while downloading; this module checks the bytes:
content type and magic bytes, format, pixel limits *from the header* (before
any decoding, so a decompression bomb never gets decoded), dimensions, and a
full decode (truncated and corrupt files fail here).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from pipeline.core.config import ScrapeParams

MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def sniff(data: bytes) -> str | None:
    """The image format named by the magic bytes, or ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in MAGIC:
        if data.startswith(magic):
            return fmt
    return None


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on one downloaded file.

    Attributes:
        reason: ``None`` if the file is a usable image, else an excluded_reason.
        detail: Human-readable explanation.
        format: Sniffed format (``None`` if not an image).
        width: Pixels, from the header when readable.
        height: Pixels, from the header when readable.
    """

    reason: str | None
    detail: str
    format: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def ext(self) -> str:
        return EXT.get(self.format or "", "bin")


def check_image(data: bytes, content_type: str | None, params: ScrapeParams) -> ImageCheck:
    """Check downloaded bytes.

    Args:
        data: The body.
        content_type: The Content-Type header, if any.
        params: Limits (``max_bytes``, ``max_pixels``, ``min_side``, ``max_side``, ``formats``).

    Returns:
        The verdict; never raises on bad input.

    Example:
        >>> check_image(b"<html>oops</html>", "text/html", ScrapeParams()).reason
        'not_an_image'
    """
    if not data:
        return ImageCheck("corrupt", "empty body")
    if len(data) > params.max_bytes:
        return ImageCheck("too_large_bytes", f"{len(data)} bytes > max_bytes {params.max_bytes}")
    fmt = sniff(data)
    ctype = (content_type or "").split(";")[0].strip().lower()
    if fmt is None:
        head = data[:256].lstrip().lower()
        what = "an HTML page" if head.startswith((b"<!doctype", b"<html")) or "html" in ctype \
            else f"unrecognised bytes (Content-Type {ctype or 'missing'})"
        return ImageCheck("not_an_image", f"expected an image, got {what}")
    if fmt not in params.formats:
        return ImageCheck("unsupported_format", f"{fmt} is not in scrape.formats", fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        return ImageCheck("too_many_pixels", f"decompression bomb refused: {exc}", fmt)
    except Exception as exc:  # PIL raises many types on garbage
        return ImageCheck("corrupt", f"unreadable {fmt} header: {exc}", fmt)
    with im:
        w, h = im.size
        if w * h > params.max_pixels:
            return ImageCheck("too_many_pixels", f"{w}x{h} = {w * h} px > max_pixels "
                              f"{params.max_pixels} (not decoded)", fmt, w, h)
        if min(w, h) < params.min_side:
            return ImageCheck("too_small", f"{w}x{h} below min_side {params.min_side}", fmt, w, h)
        if max(w, h) > params.max_side:
            return ImageCheck("too_big", f"{w}x{h} above max_side {params.max_side}", fmt, w, h)
        try:
            if fmt == "JPEG":
                im.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # decodes every byte, 64x cheaper
            im.load()
        except Exception as exc:
            return ImageCheck("corrupt", f"{fmt} does not decode: {exc}", fmt, w, h)
    return ImageCheck(None, "ok", fmt, w, h)
