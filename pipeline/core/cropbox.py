"""The crop algorithm: find the object in a photo, cut a square around it, scale it.

Pure functions on pixels, shared by the crop stage (``pipeline/stages/crop.py``, which runs them
over the store and writes crops) and by everything that meets a photo from outside the
pipeline (``gemcurate predict``, the external test of ``evaluate``), so a photo is always
cut the same way.


The published projects took the bounding box of *all* Canny edges. That box
grows to include gradient backgrounds, cast shadows and mirror reflections.
Here, at a reduced analysis size:

1. **Background model**: a smooth quadratic surface per channel fitted to the
   image border (robust refit without outliers), so linear and radial
   gradients and vignetting are part of the background, not of the object.
2. **Residual**: colour distance from that model; **Canny** runs on the
   background-subtracted luminance (blur and thresholds from params), so a
   gradient backdrop produces no edges.
3. **Shadows and hot spots** do not count as object *area*: pixels darker (a
   cast shadow) or brighter (a lamp's spot on a radial backdrop) than the model
   by a common factor in every channel, i.e. with the background's chroma.
   Such changes are soft, so they make no Canny edges; a neutral object (grey
   opal, moonstone, a white cabochon) whose body looks like a shadow still has
   a crisp outline, and edges always count.
4. **Dominant object**: connected components of (chromatic residual) ∪ edges;
   the largest wins; a comparable second one means ``several_objects``.
5. **Reflections** are trimmed: rows below the object whose residual fades to
   a fraction of the object's are a mirror image on a glossy surface.
6. A square box with a margin, cut from the *original* pixels, padded with the
   background colour, resized to ``target_size``.

``crop_confidence`` says how clearly one whole object was found; no object,
an object cut by the border or several objects set ``needs_review`` with
``crop_<issue>`` and no blind crop is published for them.

Example:
    >>> res = find_box(rgb, CropParams())
    >>> res.box, res.confidence, res.issue
    ([112, 80, 530, 498], 0.93, 'none')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.config import CropParams
from pipeline.core.imageio import ImageError, Loaded, block_mean, fit, load_rgb, shrink


@dataclass(frozen=True)
class CropResult:
    """Where the object is, in the coordinates of the image given to :func:`find_box`."""

    object_box: list[int] | None  # tight [x0, y0, x1, y1]
    box: list[int] | None          # square with margin (may extend past the image)
    confidence: float
    issue: str  # none, no_object, cut_by_border, several_objects, low_contrast, fills_frame
    background: tuple[int, int, int]


BORDER_POINTS = 4000  # at most this many border samples (a 96 px image has ~2,100)


@lru_cache(maxsize=32)
def _border_design(h: int, w: int, frame: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices and quadratic design matrix of the border band's pixels."""
    b = max(2, int(frame * min(h, w)))
    mask = np.zeros((h, w), bool)
    mask[:b] = mask[-b:] = True
    mask[:, :b] = mask[:, -b:] = True
    ys, xs = np.nonzero(mask)
    step = max(1, len(xs) // BORDER_POINTS)
    ys, xs = ys[::step], xs[::step]
    xn, yn = (xs + 0.5) / w - 0.5, (ys + 0.5) / h - 0.5
    design = np.stack([np.ones_like(xn), xn, yn, xn * xn, yn * yn, xn * yn], 1)
    return ys * w + xs, design


@lru_cache(maxsize=32)
def _grid_basis(gh: int, gw: int) -> np.ndarray:
    """The quadratic basis at the centres of a gh × gw grid, as a (gh·gw) × 6 float32 matrix."""
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / gw - 0.5
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / gh - 0.5
    gx, gy = np.meshgrid(gx, gy)
    return np.stack([np.ones_like(gx), gx, gy, gx * gx, gy * gy, gx * gy], -1).reshape(-1, 6)


def background_coarse(rgb: np.ndarray, frame: float = 0.04, terms: int = 6) -> np.ndarray:
    """The border's smooth per-channel quadratic surface on a coarse grid (≈ H/8 × W/8 × 3).

    The surface is smooth, so it is fitted on a ≤ 96 px copy (block averages: a textured
    backdrop's single pixels are too noisy), to the border band (4 % of the shorter side),
    refitted without the pixels an object covers. Values are clipped to 0..255; a
    bilinear resize of the grid stays in range. ``terms=3`` fits a plane: a noisy
    (textured) border does not pin a quadratic's curvature, which then bulges over the
    middle of the frame, where the object is.
    """
    h, w = rgb.shape[:2]
    src = fit(rgb, 96, fast=True)
    flat, design = _border_design(*src.shape[:2], frame)
    design = design[:, :terms]
    vals = np.take(src.reshape(-1, 3), flat, axis=0).astype(np.float64)
    keep = np.ones(len(flat), bool)
    coef = np.zeros((terms, 3))
    for _ in range(3):  # refit without border pixels that belong to an object
        d = design[keep]  # 6 unknowns: the normal equations are well conditioned and 5× faster
        coef = np.linalg.solve(d.T @ d, d.T @ vals[keep])
        e = np.abs(design @ coef - vals)
        err = np.maximum(np.maximum(e[:, 0], e[:, 1]), e[:, 2])
        thr = max(6.0, 2.5 * float(np.partition(err, len(err) // 2)[len(err) // 2]))
        new = err < thr
        if new.sum() < 0.3 * len(keep) or (new == keep).all():
            break
        keep = new
    gh, gw = max(2, h // 8), max(2, w // 8)
    grid = (_grid_basis(gh, gw)[:, :terms] @ coef.astype(np.float32)).reshape(gh, gw, 3)
    return np.clip(grid, 0, 255)


def _components(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """Areas and boxes (x, y, w, h) of the 8-connected components of at least ``min_area`` px.

    Labelled at half resolution, where a 2 × 2 block is set when any of its pixels is
    (4× fewer pixels to label and count; gaps under 2 px are already closed by the
    caller). Areas are in full-resolution pixels (4 per block); each box is refined to
    the full-resolution mask inside the block box, so it stays tight to the pixel.
    """
    h, w = mask.shape
    half = np.ascontiguousarray(cv2.dilate(mask, np.ones((2, 2), np.uint8), anchor=(0, 0))[::2, ::2])
    n, lab = cv2.connectedComponents(half, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.int64)
    areas = np.bincount(lab.ravel(), minlength=n)[1:] * 4
    big = np.flatnonzero(areas >= min_area) + 1
    boxes = np.zeros((len(big), 4), np.int64)
    for k, c in enumerate(big):
        x, y, bw, bh = cv2.boundingRect((lab == c).view(np.uint8))
        x0, y0, x1, y1 = 2 * x, 2 * y, min(w, 2 * (x + bw)), min(h, 2 * (y + bh))
        rx, ry, rw, rh = cv2.boundingRect(mask[y0:y1, x0:x1])
        boxes[k] = (x0 + rx, y0 + ry, rw, rh)
    return areas[big - 1], boxes


def _percentile_u8(values: np.ndarray, mask: np.ndarray, q: float) -> float:
    """The ``q``-th percentile of uint8 ``values`` under ``mask`` (a 256-bin histogram)."""
    hist = cv2.calcHist([values], [0], mask.astype(np.uint8), [256], [0, 256]).ravel()
    total = hist.sum()
    if total <= 0:
        return 0.0
    return float(np.searchsorted(np.cumsum(hist), q / 100 * total))


def _soft_change(rgb: np.ndarray, coarse: np.ndarray, glow: bool = True) -> np.ndarray:
    """Pixels that differ from the background by a common factor in every channel (uint8 0/1).

    Darker (a cast shadow) or, with ``glow``, brighter (a lamp's hot spot on a radial
    backdrop), with the background's chroma. These regions are soft, so they are found at
    half resolution (4× fewer float divisions) and scaled back up. On a textured backdrop
    there is no hot spot to model, and a white pearl on grey fabric is "brighter by a
    common factor": ``glow`` is off there.
    """
    h, w = rgb.shape[:2]
    img = (block_mean(rgb, 2) if min(h, w) >= 2 else rgb).astype(np.float32) + 1
    if not glow:  # a textured backdrop: its grain would break the common factor of a shadow
        img = cv2.GaussianBlur(img, (0, 0), 2.0)
    bg = cv2.resize(coarse, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) + 1
    rch = cv2.split(cv2.divide(img, bg))
    rmean = cv2.add(cv2.add(rch[0], rch[1]), rch[2]) * (1 / 3)
    spread = cv2.max(cv2.max(cv2.absdiff(rch[0], rmean), cv2.absdiff(rch[1], rmean)),
                     cv2.absdiff(rch[2], rmean))
    tol: float | np.ndarray = 0.06
    if not glow:
        # a dark backdrop's shadow is a few levels deep: the grain and the JPEG's noise, a
        # level or two either way, move its channels' ratios by far more than 6 % there
        tol = 0.06 + SHADOW_NOISE / cv2.cvtColor(bg, cv2.COLOR_RGB2GRAY)
    soft = (spread < tol) & (((rmean < 0.98) & (rmean > 0.35)) | ((rmean > 1.02) & glow))
    return cv2.resize(soft.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)


#: levels of noise a shadow's channel ratios are allowed on a textured backdrop (see _soft_change)
SHADOW_NOISE = 4.0
TEXTURE_FACTOR = 1.5  # the object's residual must exceed the border's 95th percentile by this
TEXTURE_EDGES = 0.03  # border pixels on Canny edges above which the backdrop counts as textured


def _border_values(img: np.ndarray, frame: float = 0.04) -> np.ndarray:
    """The values of a 2-D array's border band (4 % of the shorter side), as one flat array.

    Four strips, not a mask: a masked histogram or count scans the whole image (0.11 ms at
    400 px), the strips only the band.
    """
    h, w = img.shape[:2]
    b = max(2, int(frame * min(h, w)))
    return np.concatenate([img[:b].ravel(), img[-b:].ravel(), img[b:-b, :b].ravel(),
                           img[b:-b, -b:].ravel()])


def _p95_u8(values: np.ndarray) -> float:
    """The 95th percentile (nearest rank) of flat uint8 values."""
    cum = np.cumsum(np.bincount(values, minlength=256))
    return float(np.searchsorted(cum, 0.95 * cum[-1])) if cum[-1] else 0.0


FILL_RESIDUAL = 60  # the border's 95th-percentile residual above which the stone fills the frame


def _whole_frame(h: int, w: int, bg: tuple[int, int, int]) -> CropResult:
    side = max(h, w)
    sq = [round(w / 2 - side / 2), round(h / 2 - side / 2), round(w / 2 + side / 2), round(h / 2 + side / 2)]
    return CropResult([0, 0, w, h], sq, 0.6, "fills_frame", bg)


# long: the crop algorithm's steps in order (backdrop model, residual, components, shadow, reflection,
# frame contact); each step is a helper above, and the images they share would be a dozen arguments
# between functions
def find_box(rgb: np.ndarray, p: CropParams) -> CropResult:
    """Find the dominant object of an RGB image (pure; the unit tests' entry point)."""
    h, w = rgb.shape[:2]
    coarse = background_coarse(rgb)
    bg_colour = tuple(int(c) for c in np.median(coarse[::4, ::4].reshape(-1, 3), 0))
    coarse8 = (coarse + 0.5).astype(np.uint8)
    bg = cv2.resize(coarse8, (w, h), interpolation=cv2.INTER_LINEAR)
    # residual: the largest channel difference from the model (uint8 throughout:
    # numpy's channel reductions and float arithmetic are the slow part at this size)
    # Canny on the background-subtracted luminance (grey is linear: grey(img) − grey(bg))
    grey_bg = cv2.cvtColor(bg, cv2.COLOR_RGB2GRAY)
    lum = cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.0, grey_bg, -1.0, 128.0)
    if p.blur_sigma > 0:
        lum = cv2.GaussianBlur(lum, (0, 0), p.blur_sigma)
    edges = cv2.Canny(lum, p.canny_low, p.canny_high)
    # a textured backdrop (fabric, granite, wood) makes edges all along the border: its
    # model is a plane (see background_coarse), and the edges are found again against it
    border_edges = _border_values(edges)
    textured = np.count_nonzero(border_edges) > TEXTURE_EDGES * border_edges.size
    if textured:
        coarse = background_coarse(rgb, terms=3)
        bg = cv2.resize((coarse + 0.5).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
        lum = cv2.addWeighted(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.0,
                              cv2.cvtColor(bg, cv2.COLOR_RGB2GRAY), -1.0, 128.0)
        if p.blur_sigma > 0:
            lum = cv2.GaussianBlur(lum, (0, 0), p.blur_sigma)
        edges = cv2.Canny(lum, p.canny_low, p.canny_high)
    dch = cv2.split(cv2.absdiff(rgb, bg))
    resid = cv2.max(cv2.max(dch[0], dch[1]), dch[2])
    if p.blur_sigma > 0:
        resid = cv2.GaussianBlur(resid, (0, 0), p.blur_sigma)
    soft = _soft_change(rgb, coarse, glow=not textured)
    # shadow-like and glow-like pixels are not object area; every crisp edge is object
    # (a grey stone's body passes for shadow, its outline does not). Measured on 688
    # generated photos: dropping edges inside shadows put 9.6 % of boxes under IoU 0.75,
    # counting the hot spot of radial backdrops as object 4.7 %; both off: 0.3 %.
    # a textured backdrop (fabric, granite, wood) is no smooth surface: the border tells how
    # far its own pixels stray from the model and how many edges its texture makes, and the
    # object must stand out from that, not from a smooth backdrop's tolerance
    border_p95 = _p95_u8(_border_values(resid))
    # an integer threshold: for uint8 residuals "> t" is "> floor(t)", and a float would
    # make numpy compare the whole image in float64
    tol = int(max(p.background_tolerance, TEXTURE_FACTOR * border_p95))
    solid = (resid > tol) & (soft == 0)
    if textured:  # the grain's edges, and a grainy shadow's outline, are no object's outline
        keep = (resid > tol) & (cv2.dilate(soft, np.ones((5, 5), np.uint8)) == 0)
        edges = cv2.bitwise_and(edges, (keep * 255).astype(np.uint8))
    mask = (solid | (edges > 0)).view(np.uint8)
    k = max(3, int(0.01 * max(h, w)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    areas, boxes = _components(mask, max(1, int(0.002 * h * w)))
    # the border is no backdrop at all (facets or a cabochon's surface reach every edge): the
    # stone fills the frame, and the frame is its crop
    fills = border_p95 > FILL_RESIDUAL
    if len(areas) == 0 or areas.max() < p.min_object_area * h * w:
        return _whole_frame(h, w, bg_colour) if fills else CropResult(None, None, 0.0, "no_object",
                                                                          bg_colour)
    order = np.argsort(-areas, kind="stable")
    main = int(order[0])
    areas = areas.astype(np.float64)
    x, y, bw, bh = (int(v) for v in boxes[main])
    # merge close fragments of the same object (prongs, chain links, detached facets)
    pad = int(0.15 * max(bw, bh))
    others = []
    for idx in order[1:]:
        cx, cy, cw, ch = (int(v) for v in boxes[idx])
        ca = float(areas[idx])
        near = cx < x + bw + pad and cx + cw > x - pad and cy < y + bh + pad and cy + ch > y - pad
        if near:
            x0, y0 = min(x, cx), min(y, cy)
            x, y, bw, bh = x0, y0, max(x + bw, cx + cw) - x0, max(y + bh, cy + ch) - y0
        else:
            others.append(ca)
    obj = mask[y:y + bh, x:x + bw] > 0
    # reflections: a faded mirror image right below the object (rows below a split
    # row are dimmer copies of the rows above it, in reverse order)
    sub = resid[y:y + bh, x:x + bw]
    rows = np.where(obj.any(1), (sub * obj).sum(1, dtype=np.float64) / np.maximum(obj.sum(1), 1), 0.0)
    split = reflection_split(rows)
    if split is not None:
        bh = split
    contrast = _percentile_u8(np.ascontiguousarray(resid[y:y + bh, x:x + bw]), obj[:bh], 90)
    box_obj = [x, y, x + bw, y + bh]
    touches = x <= 0 or y <= 0 or x + bw >= w or y + bh >= h
    if touches and border_contact(rgb, (x, y, bw, bh), bg_colour,
                                  3 * p.background_tolerance) < CUT_CONTACT:
        touches = False  # it grazes the frame, the frame does not cut it
    second = max(others) / areas[main] if others else 0.0
    conf = 1.0
    conf *= float(np.clip(contrast / (3 * p.background_tolerance), 0.0, 1.0)) ** 0.5
    issue = "none"
    if touches:  # kept as the issue either way; only "review" makes it doubtful
        issue, conf = "cut_by_border", conf * (0.3 if p.cut_by_border == "review" else 1.0)
    elif second > 0.25:
        if fills:
            return _whole_frame(h, w, bg_colour)
        issue, conf = "several_objects", conf * (1 - min(second, 1.0)) * 0.6
    elif contrast < 1.5 * p.background_tolerance:
        issue = "low_contrast"
    side = max(bw, bh) * (1 + 2 * p.margin)
    cxm, cym = x + bw / 2, y + bh / 2
    sq = [round(cxm - side / 2), round(cym - side / 2), round(cxm + side / 2), round(cym + side / 2)]
    return CropResult(box_obj, sq, round(float(conf), 4), issue, bg_colour)


#: the share of the box's side along which the object lies on the frame's edge, from which
#: the frame cuts it (a stone cropped tight by the store grazes the frame over a few pixels;
#: a cut one lies on it along a chord)
CUT_CONTACT = 0.2


def border_contact(rgb: np.ndarray, box: tuple[int, int, int, int], bg: tuple[int, int, int],
                   tol: int) -> float:
    """The largest share of the box's extent along a frame edge it reaches where the edge's
    pixels are not the backdrop's colour (``bg``, within ``tol``): the chord a cut object
    leaves on the frame. (The residual mask cannot tell: the background model is fitted to
    the border, where a cut object's own pixels are, and so is the tolerance derived from
    the border's residual.)"""
    x, y, bw, bh = box
    h, w = rgb.shape[:2]
    ref = np.array(bg, np.int16)

    def off(line: np.ndarray) -> float:
        if not len(line):
            return 0.0
        return float((np.abs(line.astype(np.int16) - ref).max(axis=-1) > tol).mean())

    share = 0.0
    if x <= 0:
        share = max(share, off(rgb[y:y + bh, 0]))
    if x + bw >= w:
        share = max(share, off(rgb[y:y + bh, w - 1]))
    if y <= 0:
        share = max(share, off(rgb[0, x:x + bw]))
    if y + bh >= h:
        share = max(share, off(rgb[h - 1, x:x + bw]))
    return share


def reflection_split(rows: np.ndarray) -> int | None:
    """The first row where a faded mirror image of the rows above begins, if any.

    ``rows`` is the object's mean residual per row. At a split row ``s`` (in the
    lower half), the ``n = len(rows) - s <= s`` rows below are compared with the ``n``
    rows above in mirror order: a reflection is under 45 % as strong on average
    and never reaches 80 % of the object's peak. Of the rows that pass, the split is the
    one that best parts the profile into two levels, the object's and the reflection's
    (the largest between-part variance, as Otsu's threshold): the object's own lower rows
    (a stone's darker pavilion, the curve of a cabochon) pass the test too when the split
    is put above them, and taking the first passing row cut real stones short (tanzanites,
    onyx and diamonds on ``crop-pairs``: up to 20 px of the stone lost). Vectorized with
    prefix sums.
    """
    bh = len(rows)
    csum = np.concatenate([[0.0], np.cumsum(rows)])
    splits = np.arange(max(2, (bh + 1) // 2), bh - 2)
    if len(splits) == 0:
        return None
    n = bh - splits
    below_mean = (csum[bh] - csum[splits]) / n
    above_mean = (csum[splits] - csum[2 * splits - bh]) / n
    below_max = np.maximum.accumulate(rows[::-1])[::-1][splits]
    above_max = np.maximum.accumulate(rows)[splits - 1]
    hit = (below_mean < 0.45 * above_mean) & (below_max < 0.8 * above_max)
    if not hit.any():
        return None
    top_mean, bottom_mean = csum[splits] / splits, below_mean
    parted = np.where(hit, splits * n * (top_mean - bottom_mean) ** 2, -1.0)
    return int(splits[np.argmax(parted)])


def scale_box(box: list[int] | None, f: float) -> list[int] | None:
    """A box found at analysis scale ``f`` (analysis / original) in original pixels."""
    if box is None:
        return None
    return [int(np.floor(box[0] / f)), int(np.floor(box[1] / f)), int(np.ceil(box[2] / f)),
            int(np.ceil(box[3] / f))]


def cut(rgb: np.ndarray, box: list[int], size: int, fill: tuple[int, int, int]) -> np.ndarray:
    """Cut ``box`` (may extend past the image) from ``rgb``, padding with ``fill``, resize to ``size``."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 <= sx0 or sy1 <= sy0:
        out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        out[:] = fill
    else:  # a view of the image, bordered where the box leaves it
        out = rgb[sy0:sy1, sx0:sx1]
        pads = (sy0 - y0, y1 - sy1, sx0 - x0, x1 - sx1)
        if any(pads):
            out = cv2.copyMakeBorder(out, *pads, cv2.BORDER_CONSTANT, value=tuple(int(c) for c in fill))
    if out.shape[0] > size:
        return shrink(out, (size, size))
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_CUBIC)


def cut_from(loaded: Loaded, path: str | Path | bytes, box: list[int], size: int,
             fill: tuple[int, int, int]) -> np.ndarray:
    """Cut ``box`` (original pixels) at ``size`` px, decoding no more than the output needs.

    The box's side maps to ``size`` output pixels, so the image only has to be
    decoded at ``size / side`` of its resolution. ``loaded`` (the decode the
    box was found in) is used when it is sharp enough; otherwise ``path`` (a file or
    its bytes) is decoded again at the needed scale (JPEG: a 1/2, 1/4 or 1/8 DCT decode).
    """
    w0 = loaded.orig_size[0]
    side = max(box[2] - box[0], box[3] - box[1], 1)
    need = min(1.0, size / side)
    if loaded.scale < need * 0.999:
        loaded = load_rgb(path, max_side=int(np.ceil(max(loaded.orig_size) * need)), exact=False)
    f = loaded.array.shape[1] / w0
    if f >= 0.999:
        return cut(loaded.array, box, size, fill)
    return cut(loaded.array, [round(v * f) for v in box], size, fill)


def analysis_image(rgb: np.ndarray, side: int) -> np.ndarray:
    """The copy the box is found in: longer side ``side``, or up to 5 % more.

    When a k × k block average lands within 5 % above ``side``, it is used as it is:
    an 800 px photo is analysed at 400 px, because the linear pass to 384 px would
    cost more (0.45 ms) than finding the box in 8 % more pixels (0.2 ms).
    """
    long = max(rgb.shape[:2])
    k = long // side
    if k >= 2 and long // k <= 1.05 * side:
        return block_mean(rgb, k)
    return fit(rgb, side, fast=True)


MAX_PHOTO_BYTES = 50_000_000


def whole_square(w: int, h: int) -> list[int]:
    """The box of a whole ``w`` × ``h`` photo centred on a square (padded, never cut)."""
    side = max(w, h)
    return [(w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side]


def photo_input(data: bytes, p: CropParams, size: int) -> tuple[np.ndarray, dict]:
    """A photo from outside the pipeline as the model's input: the pipeline's crop when a box
    is trustworthy, else the whole photo centred on a padded square; then ``size`` px.

    Returns:
        The ``size`` × ``size`` RGB array and notes (``crop_issue``, ``crop_confidence``,
        ``cropped``).

    Raises:
        ImageError: Too large, not an image, or corrupt.
    """
    if len(data) > MAX_PHOTO_BYTES:
        raise ImageError(f"larger than {MAX_PHOTO_BYTES // 1_000_000} MB")
    loaded = load_rgb(data, max_side=max(p.analysis_side, 2 * p.target_size), exact=False)
    small = analysis_image(loaded.array, p.analysis_side)
    res = find_box(small, p)
    f = small.shape[1] / loaded.orig_size[0]
    box = scale_box(res.box, f)
    notes = {"crop_issue": res.issue, "crop_confidence": round(float(res.confidence), 3)}
    if p.mode == "full" or box is None or res.issue not in ("none", "low_contrast"):
        # crop.mode full, or no trustworthy box: the whole photo, centred on a padded square
        box = whole_square(*loaded.orig_size)
        notes["cropped"] = False
    else:
        notes["cropped"] = True
    img = cut_from(loaded, data, box, p.target_size, res.background)
    if img.shape[0] != size:
        img = fit(img, size, upscale=True)
    return img, notes
