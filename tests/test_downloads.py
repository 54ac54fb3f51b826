import time

import pytest

from pipeline.core.config import ScrapeParams
from pipeline.stages.scrape.downloads import check_image, sniff
from pipeline.synthetic import junk
from tests.helpers import jpeg_bytes

P = ScrapeParams()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_valid_images_pass(fmt):
    v = check_image(jpeg_bytes(300, 200, fmt=fmt), "image/x", P)
    assert v.ok and (v.format, v.width, v.height) == (fmt, 300, 200)


def test_truncated_jpeg_is_corrupt():
    data = jpeg_bytes(400, 300)
    v = check_image(data[: len(data) // 2], "image/jpeg", P)
    assert v.reason == "corrupt" and "does not decode" in v.detail


def test_garbage_after_header_is_corrupt():
    import numpy as np

    data = junk.corrupt(jpeg_bytes(400, 300), np.random.default_rng(0))
    assert check_image(data, "image/jpeg", P).reason == "corrupt"


def test_html_where_an_image_was_expected():
    v = check_image(junk.HTML_ERROR, "text/html", P)
    assert v.reason == "not_an_image" and "HTML" in v.detail
    assert check_image(b"\x00\x01binary", "application/octet-stream", P).reason == "not_an_image"


def test_decompression_bomb_is_refused_without_decoding():
    bomb = junk.decompression_bomb()
    assert len(bomb) < 2_000_000
    t = time.perf_counter()
    v = check_image(bomb, "image/png", P)
    assert v.reason == "too_many_pixels"
    assert time.perf_counter() - t < 5  # it would take far longer (and 400 MB) to decode


def test_pixel_limit_from_params():
    v = check_image(jpeg_bytes(300, 300), "image/jpeg", ScrapeParams(max_pixels=50_000))
    assert v.reason == "too_many_pixels" and (v.width, v.height) == (300, 300)


@pytest.mark.parametrize("w, h, reason", [(20, 200, "too_small"), (200, 20, "too_small"),
                                          (100, 100, None)])
def test_dimensions(w, h, reason):
    assert check_image(jpeg_bytes(w, h), "image/jpeg", P).reason == reason


def test_format_not_allowed_and_empty_and_size():
    assert check_image(jpeg_bytes(100, 100, fmt="GIF"), "image/gif", P).reason == "unsupported_format"
    assert check_image(b"", "image/jpeg", P).reason == "corrupt"
    big = ScrapeParams(max_bytes=1024)
    assert check_image(jpeg_bytes(300, 300), "image/jpeg", big).reason == "too_large_bytes"


def test_sniff():
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "WEBP"
    assert sniff(b"\x89PNG\r\n\x1a\nxx") == "PNG"
    assert sniff(b"<html>") is None
