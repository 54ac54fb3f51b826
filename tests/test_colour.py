"""The foreground colour histogram the labels probe uses beside the embedding."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline.core import colour


def square_on(backdrop: tuple[int, int, int], fill: tuple[int, int, int], side: int = 100,
              box: tuple[int, int, int, int] = (30, 20, 70, 60)) -> np.ndarray:
    img = np.zeros((side, side, 3), np.uint8)
    img[:] = backdrop
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = fill
    return img


def bin_of(rgb: tuple[int, int, int]) -> int:
    h, s, v = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV)[0, 0]
    hb, sb, vb = colour.BINS
    return (int(h) * hb // 180) * sb * vb + (int(s) * sb // 256) * vb + int(v) * vb // 256


def test_the_backdrop_is_left_out_and_the_object_fills_one_bin():
    img = square_on((245, 245, 245), (200, 20, 20))
    mask = colour.foreground_mask(img)
    assert mask.sum() == 40 * 40 and mask[20:60, 30:70].all()
    hist = colour.colour_histogram(img)
    assert hist.shape == (colour.DIM,)
    assert np.flatnonzero(hist).tolist() == [bin_of((200, 20, 20))] and hist.max() == 1.0


def test_two_colours_share_the_histogram_by_area_square_rooted():
    img = square_on((250, 250, 250), (20, 20, 200))  # 1,600 blue pixels
    img[70:90, 10:90] = (20, 200, 20)                 # 1,600 green pixels
    hist = colour.colour_histogram(img)
    assert np.isclose(hist[bin_of((20, 20, 200))], np.sqrt(0.5))
    assert np.isclose(hist[bin_of((20, 200, 20))], np.sqrt(0.5))


def test_a_photo_filling_its_frame_counts_every_pixel():
    img = np.full((64, 64, 3), (120, 40, 160), np.uint8)  # the border is the object
    assert colour.foreground_mask(img).all()
    assert colour.colour_histogram(img)[bin_of((120, 40, 160))] == 1.0


def test_unreadable_files_get_a_zero_row_and_are_named(tmp_path, caplog):
    good = tmp_path / "good.png"
    Image.fromarray(square_on((255, 255, 255), (240, 200, 0))).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not an image</html>")
    vectors, ok = colour.colour_vectors([good, broken, tmp_path / "gone.jpg"])
    assert ok.tolist() == [True, False, False]
    assert vectors[0].sum() > 0 and not vectors[1:].any()
    assert "broken.jpg" in caplog.text and "gone.jpg" in caplog.text
