"""Jewelry on display props, as real stores photograph it.

Stores rarely lay every piece flat on white: earrings hang over a bar or a T-stand,
rings stand in rows of cushions in a shop window, necklaces lie on a neck bust, all shot
with a shallow depth of field in warm light. To an ImageNet embedding a hoop hung over a
skin-grey bar, or a ring standing in a cushion, lies close to a ring on a finger (the
real product photos the shipped junk head took for hands were two such pictures: hoops
over a concrete bar, rings in a jeweller's window, ``../shared/realdata/products-textured``,
dev material only). So the storefront draws jewelry on props and the head's bank
(:mod:`pipeline.stages.filter.head`) learns them as products: an elongated, skin-toned or grey shape
with a ring on it is not a hand without fingertips, nails and knuckles.

* ``bar``: a bar or rail (concrete, wood, brass, acrylic, velvet) across the frame at a
  slant, with one or two pairs of hoops or drops hung over it;
* ``cushions``: rows of ring cushions (leather or velvet), a ring standing in each, the
  back row smaller and out of focus, sometimes price tags and a bust behind;
* ``bust``: a neck bust (velvet, linen, leatherette) with a necklace and its pendant.

Everything is drawn from the given generator, so a seed gives the same picture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.synthetic import jewelry, worn

PROPS = ("bar", "cushions", "bust")
#: prop materials: (name, RGB); concrete and sand sit near skin tones on purpose
MATERIALS = (("concrete", (150, 148, 142)), ("sand", (196, 170, 140)), ("walnut", (110, 72, 45)),
             ("brass", (190, 150, 80)), ("acrylic", (225, 228, 232)), ("black", (32, 30, 32)),
             ("navy", (35, 42, 70)), ("cream", (225, 212, 190)), ("grey", (95, 95, 100)))


def _studio(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A soft, out-of-focus studio or shop background: pale, warm or dark, with bokeh."""
    pick = rng.random()
    if pick < 0.4:
        top = np.array(rng.uniform(200, 245, 3), np.float32)
    elif pick < 0.7:
        top = np.array([rng.uniform(150, 220), rng.uniform(120, 180), rng.uniform(90, 150)], np.float32)
    else:
        top = np.array(rng.uniform(15, 60, 3), np.float32)
    bottom = top * rng.uniform(0.6, 1.1)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    for _ in range(int(rng.integers(0, 10))):  # lights and reflections, far out of focus
        c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        cv2.circle(img, c, int(rng.uniform(0.02, 0.1) * w),
                   tuple(float(v) for v in rng.uniform(150, 255, 3)), -1, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), w * rng.uniform(0.01, 0.03))


def _material(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A prop's surface (float32 h × w × 3): its colour, grain or speckle."""
    name, rgb = MATERIALS[int(rng.integers(len(MATERIALS)))]
    base = np.array(rgb, np.float32) * rng.uniform(0.85, 1.1)
    if name == "walnut":
        return jewelry.backdrop(rng, w, h, "wood") * 0.6 + base * 0.4
    surf = np.broadcast_to(base, (h, w, 3)).copy()
    if name in ("concrete", "sand", "grey"):  # speckle and pits
        speck = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
        surf *= (1 + 0.06 * speck)[..., None]
    elif name in ("black", "navy", "cream"):  # velvet or leatherette: soft nap
        nap = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), max(2, w / 30))
        surf *= (1 + 0.15 * nap / (np.abs(nap).max() + 1e-6))[..., None]
    return surf


def _hoop(rng: np.random.Generator, img: np.ndarray, top: np.ndarray, radius: float,
          metal: np.ndarray, beads: bool) -> None:
    """An earring hung from ``top``: a hoop (with beads on its lower half) or a drop."""
    c = top + np.array([0, radius])
    tilt = rng.uniform(0.75, 1.0)
    thick = max(2, int(radius * rng.uniform(0.03, 0.07)))
    if rng.random() < 0.7:
        jewelry._band(img, c, (radius * tilt, radius), float(rng.normal(0, 6)), thick, metal)
        if beads:
            colour = (np.array(jewelry.rgb_of(rng.uniform(0, 360), rng.uniform(0.5, 0.9),
                                              rng.uniform(0.3, 0.6)), np.float32)
                      if rng.random() < 0.85 else np.array((238, 232, 222), np.float32))  # or pearls
            n = int(rng.integers(6, 16))
            size = max(3, int(radius * rng.uniform(0.08, 0.14)))
            for k in range(n):
                a = math.pi * (0.2 + 0.6 * k / max(1, n - 1))  # along the lower half
                p = c + np.array([radius * tilt * math.cos(a), radius * math.sin(a)])
                cv2.circle(img, (int(p[0]), int(p[1])), size, tuple(float(v) for v in colour * 0.6),
                           -1, cv2.LINE_AA)
                cv2.circle(img, (int(p[0] - size * 0.3), int(p[1] - size * 0.3)), max(1, size // 2),
                           tuple(float(v) for v in np.clip(colour * 1.3, 0, 255)), -1, cv2.LINE_AA)
                if k % 2 and rng.random() < 0.6:  # gold spacers between the beads
                    cv2.circle(img, (int(p[0]), int(p[1])), max(1, size // 3),
                               tuple(float(v) for v in metal), -1, cv2.LINE_AA)
    else:  # a drop: a hook, a short chain and a stone
        hook_end = top + np.array([0, radius * 0.6])
        cv2.line(img, tuple(int(v) for v in top), tuple(int(v) for v in hook_end),
                 tuple(float(v) for v in metal), thick, cv2.LINE_AA)
        jewelry._paste_stone(rng, img, hook_end[0], hook_end[1] + radius * 0.35, int(radius * 0.8))


def _bar(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = _studio(rng, w, h)
    ang = math.radians(rng.uniform(-25, 25))
    thick = h * rng.uniform(0.12, 0.3)
    cy = h * rng.uniform(0.25, 0.45)
    surf = _material(rng, h, w)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    across = (yy - cy) * math.cos(ang) - (xx - w / 2) * math.sin(ang)
    mask = cv2.GaussianBlur((np.abs(across) < thick / 2).astype(np.float32), (0, 0), 1.2)
    if rng.random() < 0.5:  # a round rail: shaded like a cylinder
        shade = worn._cylinder(across, thick / 2, float(rng.uniform(-0.6, 0.2)))
    else:  # a square bar: a lit top face and a darker front
        shade = np.where(across < -thick * rng.uniform(0.0, 0.25), 1.1, 0.8).astype(np.float32)
    bar = surf * shade[..., None]
    img = img * (1 - mask[..., None]) + bar * mask[..., None]
    if rng.random() < 0.3:  # the stand's upright, out of the frame's side
        x = w * rng.uniform(0.75, 0.95)
        cv2.rectangle(img, (int(x), int(cy)), (int(x + thick * 0.8), h),
                      tuple(float(v) for v in surf[0, 0] * 0.8), -1)
    metal = np.array(jewelry.METALS[str(rng.choice(["gold", "gold", "silver", "rose"]))], np.float32)
    pairs = int(rng.choice([1, 1, 2]))
    beads = rng.random() < 0.7
    radius = h * rng.uniform(0.12, 0.24) / pairs ** 0.3
    xs = np.sort(rng.uniform(0.2, 0.8, 2 * pairs)) * w
    for x in xs:
        y_top = cy + (x - w / 2) * math.tan(ang) - thick / 2 / math.cos(ang)
        _hoop(rng, img, np.array([x, y_top]), radius, metal * rng.uniform(0.9, 1.1), beads)
    return img


def _cushions(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = _studio(rng, w, h)
    if rng.random() < 0.5:  # a bust with a necklace behind, far out of focus
        img = cv2.GaussianBlur(_bust_on(rng, img, scale=rng.uniform(0.6, 0.9), dy=-0.25), (0, 0), w * 0.012)
    surf = _material(rng, h, w)
    base = surf[0, 0]
    metals = ["gold", "white", "rose", "silver"]
    for row, (y, size, blur) in enumerate(((0.55, 0.16, 2.5), (0.86, 0.24, 0.0))):
        n = int(rng.integers(2, 5)) + (1 - row)
        cw = w * size * rng.uniform(0.9, 1.2)
        layer = img.copy()
        for k in range(n):
            cx = w * (k + 0.5) / n + rng.normal(0, w * 0.02)
            top_y = h * y
            x0, x1 = int(cx - cw / 2), int(cx + cw / 2)
            colour = base * rng.uniform(0.85, 1.1)
            cv2.rectangle(layer, (x0, int(top_y)), (x1, int(top_y + cw * 0.7)),
                          tuple(float(v) for v in colour * 0.7), -1)
            cv2.ellipse(layer, (int(cx), int(top_y)), (int(cw / 2), int(cw * 0.18)), 0, 0, 360,
                        tuple(float(v) for v in np.clip(colour * 1.15, 0, 255)), -1, cv2.LINE_AA)
            cv2.line(layer, (int(cx - cw * 0.25), int(top_y)), (int(cx + cw * 0.25), int(top_y)),
                     tuple(float(v) for v in colour * 0.3), max(2, int(cw * 0.03)), cv2.LINE_AA)
            metal = np.array(jewelry.METALS[metals[int(rng.integers(len(metals)))]], np.float32)
            r = cw * rng.uniform(0.3, 0.42)
            centre = np.array([cx, top_y - r * 0.8])
            worn._tube_ring(layer, centre, r, rng.uniform(0.85, 1.0), 90 + rng.normal(0, 5),
                            r * rng.uniform(0.12, 0.25), metal * rng.uniform(0.85, 1.1))
            worn._ring_top(rng, layer, None, centre - np.array([0, r]), int(r * rng.uniform(0.5, 0.9)))
            if rng.random() < 0.3:  # a price tag on a thread
                tag = np.array([[cx + cw * 0.2, top_y + cw * 0.05], [cx + cw * 0.9, top_y - cw * 0.05],
                                [cx + cw * 0.95, top_y + cw * 0.15], [cx + cw * 0.25, top_y + cw * 0.25]],
                               np.int32)
                cv2.fillPoly(layer, [tag], (240, 240, 238), cv2.LINE_AA)
        if blur:
            layer = cv2.GaussianBlur(layer, (0, 0), blur * w / 500)
        img = layer
    return img


def _bust_on(rng: np.random.Generator, img: np.ndarray, scale: float = 1.0, dy: float = 0.0) -> np.ndarray:
    """``img`` with a neck bust and its necklace drawn over it (a new array)."""
    h, w = img.shape[:2]
    surf = _material(rng, h, w)
    cx = w * rng.uniform(0.4, 0.6)
    neck_w = w * 0.16 * scale
    neck_top = h * (0.05 + dy)
    shoulder_y = h * (0.55 + dy * 0.5) * (0.8 + 0.2 * scale)
    pts = np.array([[cx - neck_w, neck_top], [cx + neck_w, neck_top],
                    [cx + neck_w * 1.1, shoulder_y - h * 0.1],
                    [cx + w * 0.45 * scale, shoulder_y + h * 0.05], [cx + w * 0.5 * scale, h * 1.1],
                    [cx - w * 0.5 * scale, h * 1.1], [cx - w * 0.45 * scale, shoulder_y + h * 0.05],
                    [cx - neck_w * 1.1, shoulder_y - h * 0.1]], np.int32)
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [pts], 1.0, cv2.LINE_AA)
    xx = np.mgrid[:h, :w][1].astype(np.float32)
    shade = worn._cylinder(xx - cx, w * 0.5 * scale, float(rng.uniform(-0.5, 0.5)))
    img = img * (1 - mask[..., None]) + surf * shade[..., None] * mask[..., None]
    metal = np.array(jewelry.METALS[str(rng.choice(["gold", "silver", "white", "rose"]))], np.float32)
    drop = h * rng.uniform(0.25, 0.4) * scale
    chain_c = (cx, shoulder_y - h * 0.2)
    jewelry._band(img, chain_c, (neck_w * 1.3, drop), 0, max(1, int(w * 0.006)), metal, 20, 160)
    jewelry._paste_stone(rng, img, cx, chain_c[1] + drop + h * 0.03, int(h * rng.uniform(0.06, 0.12) * scale))
    return img


def _bust(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    return _bust_on(rng, _studio(rng, w, h))


def render_on_prop(rng: np.random.Generator, prop: str | None = None) -> np.ndarray:
    """A jewelry product photo on a display prop (RGB uint8): ``bar``, ``cushions`` or ``bust``."""
    prop = prop or str(rng.choice(PROPS, p=[0.45, 0.35, 0.2]))
    if prop not in PROPS:
        raise ValueError(f"prop must be one of {PROPS}, not {prop!r}")
    w = int(rng.integers(500, 1000))
    h = int(np.clip(w * rng.uniform(0.6, 1.0), 360, 1000))
    img = {"bar": _bar, "cushions": _cushions, "bust": _bust}[prop](rng, w, h)
    if rng.random() < 0.5:  # shot closer: the piece and its prop fill the frame
        f = rng.uniform(0.6, 0.85)
        ch, cw = int(h * f), int(w * f)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    img = img * np.float32(rng.uniform(0.85, 1.1)) + rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.6), 0, 255).astype(np.uint8)
