"""Image loading, resizing, PNG encoding and atomic writes: the per-image fast paths."""

from __future__ import annotations

import io
import os
import stat

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.core import atomic
from pipeline.core.imageio import ImageError, _decode_jpeg, encode_image, encode_png, fit, load_rgb, shrink
from pipeline.demo.catalog import rng_for
from pipeline.synthetic import gems, junk
from tests.helpers import encode, gem_photo, photo_bytes


def photo(i: int = 0, width: int = 800, height: int = 600) -> np.ndarray:
    plan = gems.plan_gem(rng_for(31, "imageio", i), list(gems.GEM_CLASSES)[i], size=(width, height))
    return gems.draw_gem(plan)


def jpeg(img: np.ndarray, mode: str = "RGB", q: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, "JPEG", quality=q)
    return buf.getvalue()


def pil_decode(data: bytes, max_side: int | None = None) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    if max_side:
        f = max_side / max(im.size)
        im.draft("RGB", (int(im.size[0] * f), int(im.size[1] * f)))
    return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("max_side", [None, 500, 400, 200, 90])
def test_fast_jpeg_decode_is_pixel_identical_to_pil(max_side):
    data = jpeg(photo(1, 801, 603))
    fast = _decode_jpeg(data, max_side, 10**8)
    assert fast is not None, "a clean baseline JPEG must take the fast path"
    arr, orig = fast
    assert orig == (801, 603)
    ref = pil_decode(data, max_side)
    assert arr.shape == ref.shape
    assert np.array_equal(arr, ref)
    loaded = load_rgb(data, max_side=max_side, exact=False)
    assert np.array_equal(loaded.array, ref) and loaded.orig_size == (801, 603)


def test_truncated_and_corrupt_jpegs_are_errors_not_grey_pictures():
    data = jpeg(photo(2))
    cut = data[: len(data) * 2 // 3]
    assert _decode_jpeg(cut, None, 10**8) is None  # strict: libjpeg's warning is a failure
    with pytest.raises(ImageError):
        load_rgb(cut)
    with pytest.raises(ImageError):
        load_rgb(data[:200] + b"\x00" * 50)


def test_cmyk_and_grey_jpegs_decode_to_rgb():
    img = photo(3, 320, 240)
    grey = load_rgb(jpeg(img, "L")).array
    assert grey.shape == (240, 320, 3)
    assert np.array_equal(grey[..., 0], grey[..., 2])
    cmyk = load_rgb(jpeg(img, "CMYK", 95)).array  # TurboJPEG cannot: PIL's path does
    assert cmyk.shape == (240, 320, 3)
    assert np.abs(cmyk.astype(int) - img).mean() < 12


def test_a_jpeg_claiming_too_many_pixels_is_refused_before_decoding(tmp_path):
    data = jpeg(np.full((3000, 3000, 3), 200, np.uint8))
    with pytest.raises(ImageError, match="too many pixels"):
        load_rgb(data, max_pixels=1_000_000)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="too many pixels"):
        load_rgb(path, max_pixels=1_000_000)


def test_paths_and_bytes_load_the_same(tmp_path):
    for name, data in (("a.jpg", jpeg(photo(4))), ("b.png", junk.encode(photo(4), "PNG", 90))):
        path = tmp_path / name
        path.write_bytes(data)
        a, b = load_rgb(path, max_side=300), load_rgb(data, max_side=300)
        assert np.array_equal(a.array, b.array) and a.orig_size == b.orig_size


# --------------------------------------------------------------------------- resizing


@pytest.mark.parametrize("size", [(800, 600), (801, 603), (1203, 997), (390, 260)])
def test_shrink_matches_an_exact_area_filter(size):
    img = photo(5, *size)
    for side in (400, 384, 224, 100):
        out = fit(img, side, fast=True)
        f = side / max(size)
        want = (max(1, round(size[0] * f)), max(1, round(size[1] * f)))
        if f >= 1:
            assert out is img
            continue
        assert (out.shape[1], out.shape[0]) == want
        ref = cv2.resize(img, want, interpolation=cv2.INTER_AREA)
        assert np.abs(out.astype(int) - ref).mean() < 1.5, (size, side)
        exact = fit(img, side)  # what the junk checks were tuned on
        linear = cv2.resize(img, want, interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(exact, ref if f < 0.5 else linear)


def test_shrink_to_a_non_square_box():
    img = photo(6, 900, 700)
    out = shrink(img, (300, 200))
    assert out.shape == (200, 300, 3)


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (224, 224), (100, 333)])
def test_fast_png_is_lossless_for_every_reader(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img[: shape[0] // 2] = 37  # flat rows, where the "up" filter gives zeros
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    by_cv2 = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    by_pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    Image.open(io.BytesIO(data)).verify()  # chunk CRCs
    assert np.array_equal(by_cv2, img) and np.array_equal(by_pil, img)


def test_fast_png_compresses_photos():
    crop = cv2.resize(photo(7), (224, 224), interpolation=cv2.INTER_AREA)
    data = encode_png(crop)
    assert len(data) < 0.6 * crop.nbytes
    ok, ref = cv2.imencode(".png", crop[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok and len(data) < 1.2 * len(ref)


def test_encode_image_formats_and_bad_input():
    img = cv2.resize(photo(8), (64, 64))
    for fmt, magic in (("png", b"\x89PNG"), ("jpg", b"\xff\xd8\xff"), ("webp", b"RIFF")):
        data = encode_image(img, fmt)
        assert data.startswith(magic)
        back = load_rgb(data).array
        tol = 0 if fmt != "jpg" else 6
        assert np.abs(back.astype(int) - img).mean() <= tol
    with pytest.raises(ValueError):
        encode_png(img.astype(np.float32))
    with pytest.raises(ValueError):
        encode_png(img[..., 0])


# --------------------------------------------------------------------------- atomic writes


def test_write_bytes_is_atomic_creates_folders_and_honours_the_umask(tmp_path):
    dest = tmp_path / "ab" / "cd" / "x.png"
    atomic.write_bytes(dest, b"one")
    assert dest.read_bytes() == b"one"
    old = os.umask(0o022)
    try:
        atomic.write_bytes(dest, b"two")
    finally:
        os.umask(old)
    assert dest.read_bytes() == b"two"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644  # readable by the trainers' accounts
    with pytest.raises(TypeError):
        atomic.write_bytes(dest, "not bytes")  # type: ignore[arg-type]
    assert dest.read_bytes() == b"two"  # a failed write leaves the old file
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.png"]  # and no temporary


def test_broken_files_are_image_errors():
    data = photo_bytes(0)
    for bad in (data[: len(data) // 2], junk.HTML_ERROR, b"", junk.decompression_bomb(20000)):
        with pytest.raises(ImageError):
            load_rgb(bad)


def test_reduced_decode_keeps_the_original_size():
    img, _ = gem_photo(1, width=800, height=600)
    loaded = load_rgb(encode(img), max_side=200)
    assert loaded.orig_size == (800, 600)
    assert 100 <= max(loaded.array.shape[:2]) <= 200


def test_png_bytes_are_a_pure_function_of_the_pixels():
    """Same pixels, same bytes, whatever the process did before: an unchanged dataset keeps
    its checksums (ISA-L, used before, changed 3 of 4,018 demo images between two runs)."""
    import subprocess
    import sys

    code = ("import hashlib, numpy as np; from pipeline.core.imageio import encode_png\n"
            "rng = np.random.default_rng(int(__import__('sys').argv[1]))\n"
            "for _ in range(int(__import__('sys').argv[1]) * 7):\n"
            "    encode_png((rng.random((rng.integers(20, 300), 224, 3)) * 255).astype(np.uint8))\n"
            "img = np.zeros((224, 224, 3), np.uint8); img[40:180, 30:200] = (200, 30, 60)\n"
            "img[::7] += 9\n"
            "print(hashlib.sha256(encode_png(img)).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code, str(k)], capture_output=True, text=True,
                           check=True).stdout for k in (0, 3, 11)}
    assert len(outs) == 1
