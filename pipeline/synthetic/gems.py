"""Procedural cut-stone photographs for the demo storefront.

A stone is first *planned* (every random choice drawn from a seeded generator
into a :class:`GemPlan`, which also gives the exact bounding box), then *drawn*
by plain deterministic functions. The ground truth therefore never needs to
render a pixel, and the same plan always gives the same pixels.

Classes differ in colour distribution, preferred cuts and optical style, the
way real gem photos do: amethyst is violet and faceted, opal is milky with
flecks of colour, turquoise is an opaque cabochon with dark veins, and so on.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# name: (hue deg, sat, val, hue spread deg, style, preferred cuts, origins)
GEM_CLASSES: dict[str, dict] = {
    "amethyst": dict(h=280, s=0.55, v=0.62, dh=12, style="faceted",
                     cuts=("round", "oval", "cushion", "emerald", "pear"),
                     origins=("Brazil", "Uruguay", "Zambia")),
    "aquamarine": dict(h=192, s=0.38, v=0.90, dh=8, style="faceted",
                       cuts=("emerald", "oval", "round", "pear"),
                       origins=("Brazil", "Madagascar", "Nigeria")),
    "citrine": dict(h=42, s=0.78, v=0.95, dh=8, style="faceted",
                    cuts=("cushion", "oval", "round", "trillion"),
                    origins=("Brazil", "Bolivia", "Madagascar")),
    "diamond": dict(h=210, s=0.03, v=0.96, dh=30, style="diamond",
                    cuts=("round", "princess", "pear", "marquise", "heart"),
                    origins=("Botswana", "Canada", "Russia")),
    "emerald": dict(h=145, s=0.78, v=0.58, dh=8, style="faceted",
                    cuts=("emerald", "emerald", "oval", "pear", "cabochon"),
                    origins=("Colombia", "Zambia", "Brazil")),
    "garnet": dict(h=352, s=0.82, v=0.40, dh=6, style="faceted",
                   cuts=("round", "oval", "cushion", "trillion"),
                   origins=("Mozambique", "India", "Tanzania")),
    "morganite": dict(h=18, s=0.30, v=0.96, dh=8, style="faceted",
                      cuts=("oval", "cushion", "pear", "round"),
                      origins=("Brazil", "Madagascar", "Afghanistan")),
    "opal": dict(h=200, s=0.08, v=0.92, dh=40, style="opal",
                 cuts=("cabochon", "oval", "pear"),
                 origins=("Australia", "Ethiopia", "Mexico")),
    "ruby": dict(h=350, s=0.90, v=0.72, dh=6, style="faceted",
                 cuts=("oval", "cushion", "round", "heart"),
                 origins=("Myanmar", "Mozambique", "Thailand")),
    "sapphire": dict(h=224, s=0.85, v=0.60, dh=8, style="faceted",
                     cuts=("oval", "cushion", "round", "emerald"),
                     origins=("Sri Lanka", "Madagascar", "Kashmir")),
    "smoky-quartz": dict(h=28, s=0.55, v=0.42, dh=8, style="faceted",
                         cuts=("emerald", "cushion", "trillion", "oval"),
                         origins=("Brazil", "Switzerland", "USA")),
    "turquoise": dict(h=174, s=0.62, v=0.78, dh=8, style="veined",
                      cuts=("cabochon", "cabochon", "pear", "oval"),
                      origins=("Iran", "USA", "China")),
    "peridot": dict(h=82, s=0.78, v=0.78, dh=8, style="faceted",
                    cuts=("oval", "round", "cushion", "marquise"),
                    origins=("Pakistan", "USA", "Myanmar")),
    "tanzanite": dict(h=252, s=0.62, v=0.58, dh=8, style="faceted",
                      cuts=("oval", "trillion", "cushion", "pear"),
                      origins=("Tanzania",)),
    "imperial-topaz": dict(h=30, s=0.85, v=0.92, dh=6, style="faceted",
                           cuts=("pear", "oval", "emerald", "marquise"),
                           origins=("Brazil", "Pakistan")),
    "onyx": dict(h=0, s=0.0, v=0.08, dh=0, style="opaque",
                 cuts=("cabochon", "emerald", "oval"),
                 origins=("Brazil", "India", "Uruguay")),
    "moonstone": dict(h=210, s=0.10, v=0.88, dh=10, style="sheen",
                      cuts=("cabochon", "oval", "pear"),
                      origins=("Sri Lanka", "India", "Madagascar")),
    "tourmaline": dict(h=330, s=0.65, v=0.80, dh=14, style="faceted",
                       cuts=("emerald", "oval", "trillion", "pear"),
                       origins=("Brazil", "Afghanistan", "Nigeria")),
    "spinel": dict(h=340, s=0.70, v=0.60, dh=10, style="faceted",
                   cuts=("cushion", "oval", "round"),
                   origins=("Myanmar", "Tanzania", "Vietnam")),
    "zircon": dict(h=185, s=0.55, v=0.85, dh=10, style="diamond",
                   cuts=("round", "oval", "emerald"),
                   origins=("Cambodia", "Sri Lanka", "Australia")),
}


def rgb_of(h_deg: float, s: float, v: float) -> tuple[float, float, float]:
    """0–255 RGB of an HSV colour given as (degrees, 0–1, 0–1)."""
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360) / 360.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return (r * 255, g * 255, b * 255)


def outline(cut: str, n: int = 48) -> np.ndarray:
    """Unit outline (x right, y down) of a cut, roughly inside [-1, 1]², as an (n, 2) array."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    if cut in ("round", "cabochon"):
        pts = np.c_[np.cos(t), np.sin(t)]
    elif cut == "oval":
        pts = np.c_[0.72 * np.cos(t), np.sin(t)]
    elif cut == "cushion":
        p = 4.0
        c, s = np.cos(t), np.sin(t)
        pts = np.c_[np.sign(c) * np.abs(c) ** (2 / p), np.sign(s) * np.abs(s) ** (2 / p)] * 0.92
    elif cut in ("emerald", "princess"):
        w, h = (0.72, 1.0) if cut == "emerald" else (0.9, 0.9)
        k = 0.22 if cut == "emerald" else 0.04
        pts = np.array([[-w + k, -h], [w - k, -h], [w, -h + k], [w, h - k], [w - k, h],
                        [-w + k, h], [-w, h - k], [-w, -h + k]], dtype=float)
    elif cut == "pear":
        y = -np.cos(t)
        x = 0.7 * np.sin(t) * (0.55 + 0.45 * (y + 1) / 2) ** 1.2
        pts = np.c_[x, y]
    elif cut == "marquise":
        pts = np.c_[0.5 * np.sin(t) * np.abs(np.sin(t)) ** 0.3, np.cos(t)]
    elif cut == "heart":
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.c_[x, y] / 16.5
    elif cut == "trillion":
        a = np.array([-90, 30, 150]) * np.pi / 180
        pts = np.c_[np.cos(a), np.sin(a)]
    else:
        raise ValueError(f"unknown cut {cut!r}")
    return pts - (pts.max(0) + pts.min(0)) / 2


@dataclass(frozen=True)
class GemPlan:
    """Every random choice of one gem photograph; drawing it is deterministic."""

    width: int
    height: int
    gem: str
    cut: str
    color: tuple[float, float, float]
    cx: float
    cy: float
    radius: float
    angle: float
    bg_kind: str
    bg_colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    shadow: tuple[float, float, float]  # dx, dy, strength (fractions of radius / 0–1)
    reflection: float  # 0: none, else alpha
    facet_seed: int
    noise: float
    highlights: int
    extra: dict = field(default_factory=dict, compare=False)

    def polygon(self) -> np.ndarray:
        """The stone outline in image pixels, (n, 2) float."""
        pts = outline(self.cut)
        a = math.radians(self.angle)
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return pts @ rot.T * self.radius + [self.cx, self.cy]

    def bbox(self) -> list[int]:
        """Tight box [x0, y0, x1, y1] of the stone (shadow and reflection excluded)."""
        p = self.polygon()
        x0, y0 = np.floor(p.min(0)).astype(int)
        x1, y1 = np.ceil(p.max(0)).astype(int)
        return [max(0, int(x0)), max(0, int(y0)), min(self.width, int(x1)), min(self.height, int(y1))]


def plan_gem(rng: np.random.Generator, gem: str, stone: dict | None = None,
             size: tuple[int, int] | None = None) -> GemPlan:
    """Draw the parameters of one photograph of a stone of class ``gem``.

    Args:
        rng: Seeded generator; the plan is a pure function of its state.
        gem: A key of :data:`GEM_CLASSES`.
        stone: Properties shared by all photos of one product (``cut``, ``color``,
            ``facet_seed``); drawn here when ``None``.
        size: Canvas (width, height); drawn in 400–1200 px when ``None``.
    """
    cls = GEM_CLASSES[gem]
    stone = stone or plan_stone(rng, gem)
    if size is None:
        w = int(rng.integers(400, 1201))
        h = int(np.clip(w * rng.uniform(0.75, 1.34), 400, 1200))
    else:
        w, h = size
    short = min(w, h)
    radius = short * rng.uniform(0.14, 0.36)
    reflect = float(rng.uniform(0.18, 0.35)) if rng.random() < 0.2 else 0.0
    margin = radius * 1.05 + 0.03 * short
    room_below = radius * (2.1 if reflect else 1.05) + 0.03 * short
    cx = rng.uniform(margin, w - margin)
    cy = rng.uniform(margin, max(margin + 1, h - room_below))
    bg_kind = str(rng.choice(["white", "grey", "gradient", "radial"], p=[0.35, 0.2, 0.3, 0.15]))
    base = float(rng.uniform(236, 255)) if bg_kind == "white" else float(rng.uniform(175, 235))
    other = float(np.clip(base - rng.uniform(25, 70), 90, 255))
    tint = rng.normal(0, 3, 3)
    c1 = tuple(float(np.clip(base + t, 0, 255)) for t in tint)
    c2 = tuple(float(np.clip(other + t, 0, 255)) for t in tint)
    shadow = (float(rng.uniform(-0.15, 0.15)), float(rng.uniform(0.05, 0.25)),
              float(rng.uniform(0.15, 0.45)) if rng.random() < 0.8 else 0.0)
    return GemPlan(
        width=w, height=h, gem=gem, cut=stone["cut"], color=stone["color"],
        cx=float(cx), cy=float(cy), radius=float(radius), angle=float(rng.uniform(-25, 25)),
        bg_kind=bg_kind, bg_colors=(c1, c2), shadow=shadow, reflection=reflect,
        facet_seed=stone["facet_seed"], noise=float(rng.uniform(0.5, 2.5)),
        highlights=int(rng.integers(2, 7)), extra={"style": cls["style"]},
    )


def plan_stone(rng: np.random.Generator, gem: str) -> dict:
    """Properties of one physical stone: shared by all photos of a product."""
    cls = GEM_CLASSES[gem]
    cut = str(rng.choice(cls["cuts"]))
    h = cls["h"] + rng.normal(0, cls["dh"] / 2)
    s = cls["s"] * rng.uniform(0.8, 1.15)
    v = cls["v"] * rng.uniform(0.85, 1.08)
    return {"cut": cut, "color": rgb_of(h, s, v), "facet_seed": int(rng.integers(1 << 30))}


def _background(plan: GemPlan) -> np.ndarray:
    h, w = plan.height, plan.width
    c1 = np.array(plan.bg_colors[0], np.float32)
    c2 = np.array(plan.bg_colors[1], np.float32)
    if plan.bg_kind in ("white", "grey"):
        return np.broadcast_to(c1, (h, w, 3)).copy()
    if plan.bg_kind == "gradient":
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        return np.broadcast_to(c1 * (1 - t) + c2 * t, (h, w, 3)).copy()
    yy, xx = np.ogrid[:h, :w]
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2) / math.sqrt(2)
    t = np.clip(r, 0, 1).astype(np.float32)[..., None]
    return c1 * (1 - t) + c2 * t


# long: one stone drawn stroke by stroke in the order its seeded generator is consumed: splitting or
# reordering changes every picture
def _stone_layer(plan: GemPlan) -> tuple[np.ndarray, np.ndarray]:
    """The stone's colour layer and its alpha mask, both float32 at canvas size."""
    h, w = plan.height, plan.width
    rng = np.random.default_rng(plan.facet_seed)
    poly = plan.polygon()
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    layer = np.zeros((h, w, 3), np.float32)
    base = np.array(plan.color, np.float32)
    style = plan.extra.get("style", "faceted")
    center = np.array([plan.cx, plan.cy])

    def fill(pts: np.ndarray, col: np.ndarray) -> None:
        cv2.fillPoly(layer, [np.round(pts * 16).astype(np.int32)],
                     tuple(float(c) for c in np.clip(col, 0, 255)), cv2.LINE_AA, shift=4)

    if style in ("faceted", "diamond") and plan.cut != "cabochon":
        fill(poly, base * 0.8)
        n = len(poly)
        step = max(1, n // 16)
        idx = list(range(0, n, step))
        table = (poly - center) * 0.52 + center
        crown = (poly - center) * 0.8 + center
        span = (0.25, 1.6) if style == "diamond" else (0.55, 1.3)
        for j, i in enumerate(idx):
            k = idx[(j + 1) % len(idx)]
            for outer, inner in ((poly, crown), (crown, table)):
                quad = np.array([outer[i], outer[k], inner[k], inner[i]])
                shade = rng.uniform(*span)
                col = base * shade
                if style == "diamond" and rng.random() < 0.12:
                    col = np.array(rgb_of(rng.uniform(0, 360), 0.6, 0.95), np.float32)
                fill(quad, col)
        fill(table, base * rng.uniform(0.95, 1.2))
        tri = rng.choice(len(idx), size=min(6, len(idx)), replace=False)
        for j in tri:
            p = table[idx[j]]
            fill(np.array([center, p, table[idx[(j + 1) % len(idx)]]]), base * rng.uniform(0.7, 1.25))
    else:
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        d = np.sqrt((xx - plan.cx + 0.3 * plan.radius) ** 2 + (yy - plan.cy + 0.35 * plan.radius) ** 2)
        dome = np.clip(1.25 - d / (1.6 * plan.radius), 0.45, 1.25)[..., None]
        layer[:] = base * dome
        if style == "opal":
            for _ in range(int(rng.integers(25, 60))):
                ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.8) * plan.radius
                p = (plan.cx + rad * math.cos(ang), plan.cy + rad * math.sin(ang))
                axes = (int(plan.radius * rng.uniform(0.03, 0.12)) + 1,
                        int(plan.radius * rng.uniform(0.02, 0.08)) + 1)
                col = rgb_of(rng.uniform(0, 360), 0.8, 0.95)
                cv2.ellipse(layer, (int(p[0]), int(p[1])), axes, float(rng.uniform(0, 180)), 0, 360,
                            col, -1, cv2.LINE_AA)
        elif style == "veined":
            for _ in range(int(rng.integers(4, 10))):
                pts = [center + rng.normal(0, plan.radius * 0.5, 2)]
                for _ in range(int(rng.integers(3, 8))):
                    pts.append(pts[-1] + rng.normal(0, plan.radius * 0.2, 2))
                cv2.polylines(layer, [np.array(pts, np.int32)], False, (60, 50, 40),
                              max(1, int(plan.radius * 0.02)), cv2.LINE_AA)
        elif style == "sheen":
            sheen = np.exp(-(((yy - plan.cy + 0.2 * plan.radius) / (0.35 * plan.radius)) ** 2))
            layer += (sheen[..., None] * np.array([40, 70, 110], np.float32))
    # specular highlights
    for _ in range(plan.highlights):
        ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.6) * plan.radius
        p = (int(plan.cx + rad * math.cos(ang)), int(plan.cy + rad * math.sin(ang)))
        cv2.circle(layer, p, max(1, int(plan.radius * rng.uniform(0.02, 0.06))), (255, 255, 255), -1,
                   cv2.LINE_AA)
    cv2.polylines(layer, [np.round(poly * 16).astype(np.int32)], True,
                  tuple(float(c) for c in base * 0.45), max(1, int(plan.radius * 0.015)),
                  cv2.LINE_AA, shift=4)
    return layer, mask


def _nonzero_box(m: np.ndarray) -> tuple[slice, slice]:
    """The smallest (rows, columns) window holding every non-zero value of a 2-D array.

    The stone's mask and its shadow cover a fraction of the canvas: blending only inside
    their window gives the same bytes (a zero weight leaves a pixel exactly as it was) in a
    fraction of the time.
    """
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def draw_gem(plan: GemPlan) -> np.ndarray:
    """Render a plan to an RGB uint8 image."""
    h, w = plan.height, plan.width
    img = _background(plan)
    layer, mask = _stone_layer(plan)
    dx, dy, strength = plan.shadow
    if strength > 0:
        small = cv2.resize(mask, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        m = np.float32([[1, 0, dx * plan.radius / 4], [0, 1, dy * plan.radius / 4]])
        small = cv2.warpAffine(small, m, small.shape[::-1])
        small = cv2.GaussianBlur(small, (0, 0), max(1.0, plan.radius * 0.12 / 4))
        shadow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        box = _nonzero_box(shadow)  # outside it the factor is exactly 1
        img[box] *= (1 - strength * shadow[box])[..., None]
    if plan.reflection > 0:
        _x0, y0, _x1, y1 = plan.bbox()
        hh = y1 - y0
        dst0 = y1 + 1
        n = min(hh, h - dst0)
        if n > 0:
            flipped = layer[y0:y1][::-1][:n]
            fm = mask[y0:y1][::-1][:n]
            fade = np.linspace(plan.reflection, 0, n, dtype=np.float32)[:, None]
            a = (fm * fade)[..., None]
            img[dst0:dst0 + n] = img[dst0:dst0 + n] * (1 - a) + flipped * a
    box = _nonzero_box(mask)  # outside the stone's mask the blend leaves img as it is
    a = mask[box][..., None]
    img[box] = img[box] * (1 - a) + layer[box] * a
    noise = np.random.default_rng(plan.facet_seed + 1).normal(0, plan.noise, (h, w, 1))
    img += noise.astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_small_gem(rng: np.random.Generator, gem: str, size: int) -> np.ndarray:
    """A small centred stone photo (used inside certificates and hand photos)."""
    stone = plan_stone(rng, gem)
    plan = plan_gem(rng, gem, stone, size=(size, size))
    plan = GemPlan(**{**plan.__dict__, "cx": size / 2, "cy": size / 2, "radius": size * 0.36,
                      "reflection": 0.0, "bg_kind": "white"})
    return draw_gem(plan)
