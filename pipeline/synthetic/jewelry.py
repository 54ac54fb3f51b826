"""Jewelry product photos and textured backdrops, drawn procedurally.

The generated store sells loose stones on plain backgrounds; real stores also show
rings, necklaces, bracelets, earrings and watches, and shoot on wood, velvet,
marble or fabric. The junk heads (:mod:`pipeline.stages.filter.head`) learn ``product`` from
these too, so that polished gold or a bracelet's curve is not taken for skin or a
hand, and a grained backdrop not for a page of text.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.synthetic.gems import GEM_CLASSES, render_small_gem, rgb_of

METALS = {
    "gold": (212, 175, 55),
    "silver": (200, 200, 205),
    "rose": (205, 140, 120),
    "white": (225, 225, 220),
    "black": (45, 45, 50),
}
KINDS = ("ring", "necklace", "bracelet", "earrings", "watch")
SET_WITH_STONE = ("ring", "necklace", "earrings")  # the kinds render_jewelry sets a stone in
BACKDROPS = ("wood", "velvet", "marble", "fabric", "plain")


def backdrop(rng: np.random.Generator, w: int, h: int, kind: str | None = None) -> np.ndarray:
    """A float32 RGB backdrop: wood grain, velvet, marble veins, woven fabric, or plain."""
    kind = kind or str(rng.choice(BACKDROPS))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if kind == "wood":
        base = np.array(
            rgb_of(rng.uniform(20, 40), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.8)), np.float32
        )
        warp = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 25) * 60
        grain = np.sin((yy + warp) / rng.uniform(4, 12)) * 0.5 + 0.5
        fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.5)
        t = (0.8 + 0.25 * grain + 0.05 * fine)[..., None]
        img = base * t
    elif kind == "velvet":
        base = np.array(
            rgb_of(rng.uniform(0, 360), rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.5)), np.float32
        )
        folds = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), min(w, h) / 8)
        folds = folds / (np.abs(folds).max() + 1e-6)
        img = base * (1 + 0.45 * folds[..., None]) + rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    elif kind == "marble":
        base = np.array(rgb_of(rng.uniform(0, 60), rng.uniform(0, 0.15), rng.uniform(0.8, 0.97)), np.float32)
        img = np.broadcast_to(base, (h, w, 3)).copy()
        vein = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(4, 10))):
            pts = [np.array([rng.uniform(0, w), rng.uniform(0, h)])]
            ang = rng.uniform(0, 2 * math.pi)
            for _ in range(30):
                ang += rng.normal(0, 0.3)
                pts.append(pts[-1] + 0.05 * max(w, h) * np.array([math.cos(ang), math.sin(ang)]))
            cv2.polylines(vein, [np.array(pts, np.int32)], False, 1.0, int(rng.integers(1, 4)), cv2.LINE_AA)
        vein = cv2.GaussianBlur(vein, (0, 0), 1.2)
        img -= vein[..., None] * rng.uniform(60, 140)
    elif kind == "fabric":
        base = np.array(
            rgb_of(rng.uniform(0, 360), rng.uniform(0, 0.35), rng.uniform(0.45, 0.85)), np.float32
        )
        p = rng.uniform(3, 6)
        weave = (np.sin(xx / p * math.pi) * np.sin(yy / p * math.pi)) * 0.08
        img = base * (1 + weave[..., None]) + rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    else:
        v = rng.uniform(200, 250)
        img = np.full((h, w, 3), v, np.float32) + rng.normal(0, 3, 3).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def pick_metal(rng: np.random.Generator) -> str:
    """A metal name of :data:`METALS`, weighted as stores stock them."""
    return str(rng.choice(list(METALS), p=[0.4, 0.3, 0.15, 0.1, 0.05]))


def _metal(rng: np.random.Generator, name: str | None = None) -> np.ndarray:
    drawn = pick_metal(rng)  # drawn even when given: the same draws, the same rest of the picture
    return np.array(METALS[name or drawn], np.float32) * rng.uniform(0.85, 1.1)


def _band(
    img: np.ndarray,
    centre,
    axes,
    angle: float,
    thick: int,
    metal: np.ndarray,
    start: float = 0,
    end: float = 360,
) -> None:
    """A shaded metal band (ellipse arc) with a highlight line."""
    c = (int(centre[0]), int(centre[1]))
    ax = (max(1, int(axes[0])), max(1, int(axes[1])))
    cv2.ellipse(
        img,
        c,
        ax,
        angle,
        start,
        end,
        tuple(float(v) for v in np.clip(metal * 0.55, 0, 255)),
        thick + 2,
        cv2.LINE_AA,
    )
    cv2.ellipse(
        img, c, ax, angle, start, end, tuple(float(v) for v in np.clip(metal, 0, 255)), thick, cv2.LINE_AA
    )
    cv2.ellipse(
        img,
        (c[0], c[1] - max(1, thick // 4)),
        ax,
        angle,
        start + 20,
        end - 120,
        tuple(float(v) for v in np.clip(metal * 1.35, 0, 255)),
        max(1, thick // 4),
        cv2.LINE_AA,
    )


def _paste_stone(rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, size: int,
                 gem: str | None = None) -> None:
    size = max(12, int(size))
    drawn = str(rng.choice(list(GEM_CLASSES)))  # drawn even when given (see _metal)
    gem = gem or drawn
    stone = render_small_gem(rng, gem, size).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    mask = (((xx - size / 2) ** 2 + (yy - size / 2) ** 2) < (0.36 * size) ** 2).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
    x0, y0 = int(cx - size / 2), int(cy - size / 2)
    h, w = img.shape[:2]
    if x0 < 0 or y0 < 0 or x0 + size > w or y0 + size > h:
        return
    roi = img[y0 : y0 + size, x0 : x0 + size]
    img[y0 : y0 + size, x0 : x0 + size] = roi * (1 - mask) + stone * mask


def photo_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) of a jewelry photo: :func:`render_jewelry`'s first draws once its
    ``kind`` is given (so a fresh generator of the same seed tells a photo's size)."""
    w = int(rng.integers(450, 1000))
    return w, int(np.clip(w * rng.uniform(0.8, 1.25), 400, 1100))


# long: one piece drawn stroke by stroke in the order its seeded generator is consumed: splitting or
# reordering changes every picture
def render_jewelry(
    rng: np.random.Generator, kind: str | None = None, backdrop_kind: str | None = None,
    metal_name: str | None = None, gem: str | None = None, beads: bool | None = None,
) -> np.ndarray:
    """A jewelry product photo (RGB uint8) of ``kind`` on a backdrop. ``metal_name`` (of
    :data:`METALS`), ``gem`` (of ``GEM_CLASSES``, for :data:`SET_WITH_STONE`) and ``beads``
    (a beaded bracelet or a metal band) fix what is otherwise drawn for each photo, so the
    photos of one product show one piece; what they leave to chance is drawn as before."""
    kind = kind or str(rng.choice(KINDS))
    w, h = photo_size(rng)
    img = backdrop(rng, w, h, backdrop_kind)
    s = min(w, h)
    metal = _metal(rng, metal_name)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    if kind == "ring":
        r = s * rng.uniform(0.18, 0.3)
        tilt = rng.uniform(0.25, 0.6)
        _band(img, (cx, cy + r * 0.3), (r, r * tilt), rng.uniform(-15, 15), max(3, int(r * 0.12)), metal)
        _paste_stone(rng, img, cx, cy + r * 0.3 - r * tilt, r * rng.uniform(0.5, 0.9), gem)
    elif kind == "necklace":
        r = s * rng.uniform(0.3, 0.42)
        pts = [
            (cx + r * math.cos(t), cy - r * 0.6 + r * 1.1 * math.sin(t))
            for t in np.linspace(0.15 * math.pi, 0.85 * math.pi, 40)
        ]
        link = max(2, int(s * 0.008))
        for x, y in pts:
            cv2.circle(
                img, (int(x), int(y)), link, tuple(float(v) for v in metal), 1 + link // 2, cv2.LINE_AA
            )
        bx, by = pts[len(pts) // 2]
        _paste_stone(rng, img, bx, by + s * 0.06, s * rng.uniform(0.12, 0.22), gem)
    elif kind == "bracelet":
        r = s * rng.uniform(0.25, 0.38)
        tilt = rng.uniform(0.3, 0.7)
        drawn = rng.random() < 0.4
        beads = drawn if beads is None else beads
        if beads:
            col = np.array(
                rgb_of(rng.uniform(0, 360), rng.uniform(0.2, 0.8), rng.uniform(0.4, 0.9)), np.float32
            )
            for t in np.linspace(0, 2 * math.pi, int(rng.integers(16, 28)), endpoint=False):
                x, y = cx + r * math.cos(t), cy + r * tilt * math.sin(t)
                rad = int(s * 0.035 * (1.2 + 0.3 * math.sin(t)))
                cv2.circle(img, (int(x), int(y)), rad, tuple(float(v) for v in col * 0.7), -1, cv2.LINE_AA)
                cv2.circle(
                    img,
                    (int(x - rad / 3), int(y - rad / 3)),
                    max(1, rad // 3),
                    tuple(float(v) for v in np.clip(col * 1.4, 0, 255)),
                    -1,
                    cv2.LINE_AA,
                )
        else:
            _band(img, (cx, cy), (r, r * tilt), rng.uniform(-20, 20), max(4, int(s * 0.03)), metal)
    elif kind == "earrings":
        for side in (-1, 1):
            x = cx + side * s * rng.uniform(0.13, 0.22)
            top = cy - s * 0.2
            cv2.ellipse(
                img,
                (int(x), int(top)),
                (int(s * 0.03), int(s * 0.05)),
                0,
                180,
                360,
                tuple(float(v) for v in metal),
                max(2, int(s * 0.008)),
                cv2.LINE_AA,
            )
            _paste_stone(rng, img, x, top + s * 0.15, s * rng.uniform(0.12, 0.2), gem)
    else:  # watch
        r = s * rng.uniform(0.14, 0.2)
        strap = np.array(
            rgb_of(rng.uniform(0, 40), rng.uniform(0.3, 0.8), rng.uniform(0.15, 0.5)), np.float32
        )
        for d in (-1, 1):
            cv2.rectangle(
                img,
                (int(cx - r * 0.6), int(cy)),
                (int(cx + r * 0.6), int(cy + d * s * 0.45)),
                tuple(float(v) for v in strap),
                -1,
                cv2.LINE_AA,
            )
        cv2.circle(img, (int(cx), int(cy)), int(r * 1.12), tuple(float(v) for v in metal), -1, cv2.LINE_AA)
        face = np.full(3, rng.uniform(20, 245), np.float32)
        cv2.circle(img, (int(cx), int(cy)), int(r), tuple(float(v) for v in face), -1, cv2.LINE_AA)
        ink = tuple(float(v) for v in (255 - face))
        for k in range(12):
            a = k * math.pi / 6
            cv2.line(
                img,
                (int(cx + 0.8 * r * math.cos(a)), int(cy + 0.8 * r * math.sin(a))),
                (int(cx + 0.92 * r * math.cos(a)), int(cy + 0.92 * r * math.sin(a))),
                ink,
                2,
                cv2.LINE_AA,
            )
        for length, a in ((0.5, rng.uniform(0, 6.3)), (0.75, rng.uniform(0, 6.3))):
            cv2.line(
                img,
                (int(cx), int(cy)),
                (int(cx + length * r * math.cos(a)), int(cy + length * r * math.sin(a))),
                ink,
                3,
                cv2.LINE_AA,
            )
    img += rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return np.clip(img, 0, 255).astype(np.uint8)


def gem_on_backdrop(rng: np.random.Generator, gem: str, backdrop_kind: str | None = None) -> np.ndarray:
    """A loose stone on a textured backdrop (wood, velvet, marble, fabric)."""
    w = int(rng.integers(400, 900))
    h = int(np.clip(w * rng.uniform(0.8, 1.25), 400, 1000))
    img = backdrop(rng, w, h, backdrop_kind or str(rng.choice(BACKDROPS[:4])))
    size = int(min(w, h) * rng.uniform(0.35, 0.7))
    _paste_stone(rng, img, w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6), size)
    return np.clip(img, 0, 255).astype(np.uint8)
