"""Close-ups of hands wearing rings, as jewelry stores and their editorial pages show them.

Real stores' hand photos are not a hand on white holding a stone up to the camera: most
are a few fingers filling the frame, a ring on one of them, on a dark, blurred or
fabric backdrop (see ``../shared/realdata/hands-jewelry``, dev material only). An
ImageNet embedding puts such a picture next to a ring product photo unless the junk head
has seen fingers close up, so the storefront draws them and the head's bank
(:mod:`pipeline.stages.filter.head`) learns from them:

* three or four fingers side by side, each a shaded cylinder (light across it, a darker
  rim where two fingers meet), with knuckle creases and a nail (bare or polished);
* the back of the hand or the palm behind them, running off the frame's edge;
* a ring on one finger: a metal band across it and a stone, sometimes with a halo of
  small diamonds;
* the whole turned to any angle and cropped close, on a jewelry-store backdrop (velvet,
  wood, marble, fabric, white cloth, a dark studio with out-of-focus lights, denim).

Everything is drawn from the given generator, so a seed gives the same picture.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.synthetic import jewelry
from pipeline.synthetic.gems import GEM_CLASSES, render_small_gem

SKIN_TONES = ((255, 219, 190), (241, 194, 155), (224, 172, 128), (198, 140, 96),
              (160, 105, 70), (120, 76, 50), (86, 55, 38))
POLISH = ((180, 30, 45), (220, 150, 150), (120, 20, 40), (235, 205, 195), (40, 30, 35))


def _backdrop(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = str(rng.choice(["velvet", "wood", "marble", "fabric", "plain", "studio", "denim", "cloth"]))
    if kind in jewelry.BACKDROPS:
        img = jewelry.backdrop(rng, w, h, kind)
    elif kind == "studio":  # dark, with out-of-focus lights
        level = rng.uniform(10, 60)
        img = np.full((h, w, 3), level, np.float32) * rng.uniform(0.7, 1.2, 3).astype(np.float32)
        for _ in range(int(rng.integers(3, 12))):
            c = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
            cv2.circle(img, c, int(rng.uniform(0.02, 0.08) * w),
                       tuple(float(v) for v in rng.uniform(120, 255, 3)), -1, cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), w * 0.02)
    elif kind == "denim":
        base = np.array([rng.uniform(40, 90), rng.uniform(70, 110), rng.uniform(120, 170)], np.float32)
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        twill = np.sin((xx + yy) / rng.uniform(1.5, 3.0)) * 0.06
        img = base * (1 + twill[..., None]) + rng.normal(0, 8, (h, w, 1)).astype(np.float32)
    else:  # white or pale cloth with soft folds
        v = rng.uniform(200, 250)
        folds = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), w / 10)
        folds /= np.abs(folds).max() + 1e-6
        img = np.full((h, w, 3), v, np.float32) * (1 + 0.12 * folds[..., None])
    if rng.random() < 0.6:  # shallow depth of field: the backdrop is out of focus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(2, 8))
    return np.clip(img, 0, 255).astype(np.float32)


def _segment_coords(xx, yy, p0, p1):
    """Per pixel: position along the segment p0→p1 (0…1, clipped) and signed distance across."""
    d = p1 - p0
    length = float(np.hypot(*d)) + 1e-6
    ux, uy = d / length
    rx, ry = xx - p0[0], yy - p0[1]
    t = (rx * ux + ry * uy) / length
    across = rx * -uy + ry * ux
    tc = np.clip(t, 0, 1)
    dist = np.hypot(xx - (p0[0] + tc * d[0]), yy - (p0[1] + tc * d[1]))
    return t, across, dist, length


def _cylinder(across: np.ndarray, r: float, light: float) -> np.ndarray:
    """Lambert shading across a cylinder of radius r lit from one side, with a soft sheen."""
    u = np.clip(across / r, -1, 1)
    body = np.sqrt(np.clip(1 - u ** 2, 0, 1))
    sheen = np.exp(-((u - light) / 0.22) ** 2)
    return 0.55 + 0.4 * body + 0.12 * sheen


# long: one worn piece drawn in the order its seeded generator is consumed: splitting or reordering
# changes every picture
def render_worn(rng: np.random.Generator, gem: str | None = None) -> np.ndarray:
    """A close-up of fingers wearing a ring, RGB uint8."""
    w = int(rng.integers(500, 1000))
    h = int(np.clip(w * rng.uniform(0.75, 1.35), 450, 1200))
    side = 900  # drawn on a canonical square (fingers pointing up), then turned and cropped
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    tone = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32)
    tone = np.clip(tone * rng.uniform(0.9, 1.08) + rng.normal(0, 5, 3), 0, 255)
    light = float(rng.uniform(-0.5, 0.5))
    colour = np.zeros((side, side, 3), np.float32)
    alpha = np.zeros((side, side), np.float32)

    def paint(mask: np.ndarray, rgb: np.ndarray) -> None:
        m = np.clip(mask, 0, 1)[..., None]
        colour[:] = colour * (1 - m) + rgb * m
        alpha[:] = np.maximum(alpha, m[..., 0])

    # together: fingers side by side filling the frame; spread: the whole hand, fingers
    # fanned; palm: palm up, fingertips curled, the jewel lying on it
    pose = str(rng.choice(["together", "together", "spread", "palm"]))
    n = int(rng.choice([3, 4, 4, 4])) if pose == "together" else 4
    fw = side * (rng.uniform(0.1, 0.14) if pose == "together" else rng.uniform(0.065, 0.09))
    fan = rng.uniform(0.0, 0.12) if pose == "together" else rng.uniform(0.15, 0.32)
    knuckle_y = side * (rng.uniform(0.55, 0.68) if pose == "together" else rng.uniform(0.42, 0.52))
    if pose == "palm":  # palms are paler and pinker than the back of the hand
        tone = np.clip(tone * 0.75 + np.array([250, 200, 185], np.float32) * 0.25, 0, 255)
    x0 = side / 2 - (n - 1) * fw * 1.0
    # the back of the hand (or palm), running off the bottom edge
    hand_l, hand_r = x0 - fw * 1.1, x0 + (n - 1) * 2 * fw + fw * 1.1
    t, across, dist, _ = _segment_coords(xx, yy, np.array([(hand_l + hand_r) / 2, knuckle_y + fw * 0.3]),
                                         np.array([(hand_l + hand_r) / 2, side * 1.6]))
    half = (hand_r - hand_l) / 2
    back = (dist < half).astype(np.float32)
    paint(cv2.GaussianBlur(back, (0, 0), 1.5), tone * (0.8 + 0.15 * _cylinder(across, half * 1.3, light)
                                                      )[..., None] * 0.95)
    fingers = []
    order = list(range(n))
    rng.shuffle(order)
    for i in order:
        base = np.array([x0 + i * 2 * fw * rng.uniform(0.97, 1.03), knuckle_y + rng.normal(0, fw * 0.2)])
        ang = -math.pi / 2 + (i - (n - 1) / 2) * fan + rng.normal(0, 0.05)
        length = side * rng.uniform(0.42, 0.6) * (0.8 if i in (0, n - 1) else 1.0)
        if pose == "palm":  # curled towards the camera: short, foreshortened
            length *= rng.uniform(0.35, 0.55)
        tip = base + length * np.array([math.cos(ang), math.sin(ang)])
        r = fw * rng.uniform(0.88, 1.0)
        t, across, dist, length = _segment_coords(xx, yy, base, tip)
        mask = cv2.GaussianBlur((dist < r).astype(np.float32), (0, 0), 1.2)
        shade = _cylinder(across, r, light)
        # knuckle creases: thin darker arcs across the finger
        crease = np.ones_like(shade)
        for tc in (0.32, 0.62):
            crease *= 1 - 0.12 * np.exp(-(((t - tc) * length) / (r * 0.08)) ** 2) * (np.abs(across) < r * 0.8)
        paint(mask, tone * (shade * crease)[..., None])
        fingers.append((base, tip, r, ang))
        # the nail: a glossy rounded patch at the tip
        nail_c = tip - (tip - base) / length * r * 0.75
        nail = np.zeros((side, side), np.float32)
        cv2.ellipse(nail, (int(nail_c[0]), int(nail_c[1])), (int(r * 0.62), int(r * 0.85)),
                    math.degrees(ang) + 90, 0, 360, 1.0, -1, cv2.LINE_AA)
        nail *= mask
        polish = (np.array(POLISH[int(rng.integers(len(POLISH)))], np.float32) if rng.random() < 0.45
                  else tone * 0.5 + np.array([240, 205, 200], np.float32) * 0.5)
        paint(cv2.GaussianBlur(nail, (0, 0), 1.0) * 0.9, polish * shade[..., None] * 1.05)
    if pose != "together":  # the thumb, from the side of the hand
        sgn = -1 if rng.random() < 0.5 else 1
        t_base = np.array([(hand_l + hand_r) / 2 + sgn * half * 0.9, knuckle_y + half * 0.9])
        t_ang = -math.pi / 2 + sgn * rng.uniform(0.6, 1.1)
        t_tip = t_base + side * rng.uniform(0.22, 0.32) * np.array([math.cos(t_ang), math.sin(t_ang)])
        t, across, dist, _ = _segment_coords(xx, yy, t_base, t_tip)
        tr = fw * 1.1
        paint(cv2.GaussianBlur((dist < tr).astype(np.float32), (0, 0), 1.2),
              tone * _cylinder(across, tr, light)[..., None])
    if pose == "palm":  # the palm's creases, and the jewel lying on it
        for _ in range(3):
            c = np.array([(hand_l + hand_r) / 2 + rng.normal(0, half * 0.2),
                          knuckle_y + half * rng.uniform(0.5, 1.1)])
            cv2.ellipse(colour, (int(c[0]), int(c[1])), (int(half * rng.uniform(0.4, 0.8)), int(half * 0.2)),
                        float(rng.uniform(-30, 30)), 180, 360, tuple(float(v) for v in tone * 0.7), 2,
                        cv2.LINE_AA)
        pos = np.array([(hand_l + hand_r) / 2, knuckle_y + half * rng.uniform(0.6, 0.9)])
        metal = np.array(jewelry.METALS[str(rng.choice(["gold", "silver", "rose", "white"]))], np.float32)
        colour[:] = np.clip(colour, 0, 255)
        _tube_ring(colour, pos, half * rng.uniform(0.25, 0.4), rng.uniform(0.4, 0.9), rng.uniform(-30, 30),
                   half * 0.08, metal)
        top = pos - np.array([0, half * 0.25])
        _ring_top(rng, colour, alpha, top, int(half * rng.uniform(0.3, 0.5)), gem)
        return _finish(rng, colour, alpha, pos, side, w, h)
    # the ring on one finger: a metal band across it and a stone on top
    base, tip, r, ang = fingers[int(rng.integers(len(fingers)))]
    pos = base + (tip - base) * rng.uniform(0.2, 0.38)
    metal = np.array(jewelry.METALS[str(rng.choice(["gold", "silver", "rose", "white"]))], np.float32)
    metal = metal * rng.uniform(0.85, 1.1)
    perp = np.array([math.cos(ang + math.pi / 2), math.sin(ang + math.pi / 2)])
    band_h = r * rng.uniform(0.25, 0.55)
    t, across, dist, _ = _segment_coords(xx, yy, pos - perp * r * 1.05, pos + perp * r * 1.05)
    band = (dist < band_h / 2).astype(np.float32)
    paint(cv2.GaussianBlur(band, (0, 0), 1.0), metal * (0.6 + 0.6 * np.exp(-((across / (band_h / 2) + 0.3)
                                                                             / 0.5) ** 2))[..., None])
    colour = np.clip(colour, 0, 255)
    _ring_top(rng, colour, alpha, pos, int(r * rng.uniform(1.3, 2.6)), gem)
    return _finish(rng, colour, alpha, pos, side, w, h)


def _finish(rng: np.random.Generator, colour: np.ndarray, alpha: np.ndarray, pos: np.ndarray, side: int,
            w: int, h: int) -> np.ndarray:
    """Skin texture, then turned, cropped round ``pos`` and set on a store backdrop."""
    # skin texture: slow blotches and fine grain
    blotch = cv2.GaussianBlur(rng.normal(0, 1, (side, side)).astype(np.float32), (0, 0), 25)
    blotch /= np.abs(blotch).max() + 1e-6
    grain = rng.normal(0, 1.5, (side, side, 1)).astype(np.float32)
    colour = colour * (1 + 0.05 * blotch[..., None]) + grain
    # turn, then crop close so the fingers fill the frame and leave it at an edge
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(0, 360)), 1.0)
    colour = cv2.warpAffine(colour, rot, (side, side), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, rot, (side, side), flags=cv2.INTER_LINEAR)
    zoom = rng.uniform(0.55, 1.0)
    cw = int(side * zoom)
    ch = int(np.clip(cw * h / w, 50, side))
    cx, cy = pos @ rot[:, :2].T + rot[:, 2]
    ox = int(np.clip(cx - cw * rng.uniform(0.3, 0.7), 0, side - cw))
    oy = int(np.clip(cy - ch * rng.uniform(0.3, 0.7), 0, side - ch))
    colour = cv2.resize(colour[oy:oy + ch, ox:ox + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(alpha[oy:oy + ch, ox:ox + cw], (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    back = _backdrop(rng, w, h)
    # a soft shadow of the hand on the backdrop
    shadow = cv2.GaussianBlur(alpha[..., 0], (0, 0), w * 0.02)
    shadow = cv2.warpAffine(shadow, np.float32([[1, 0, w * 0.02], [0, 1, h * 0.025]]), (w, h))
    back *= (1 - 0.35 * shadow)[..., None]
    img = back * (1 - alpha) + colour * alpha
    img *= rng.uniform(0.85, 1.1)  # exposure
    return np.clip(img, 0, 255).astype(np.uint8)


def _ring_top(rng: np.random.Generator, colour: np.ndarray, alpha: np.ndarray | None, pos: np.ndarray,
              stone: int, gem: str | None = None) -> None:
    """A ring's stone at ``pos`` (``stone`` px), sometimes in a halo of small diamonds."""
    h, w = colour.shape[:2]
    if rng.random() < 0.5:
        for k in range(14):
            a = 2 * math.pi * k / 14
            p = pos + (stone * 0.55) * np.array([math.cos(a), math.sin(a)])
            c = (int(p[0]), int(p[1]))
            cv2.circle(colour, c, max(2, int(stone * 0.09)), (245, 245, 250), -1, cv2.LINE_AA)
            cv2.circle(colour, c, max(1, int(stone * 0.04)), (170, 170, 185), -1, cv2.LINE_AA)
            if alpha is not None:
                cv2.circle(alpha, c, max(2, int(stone * 0.09)), 1.0, -1, cv2.LINE_AA)
    if gem not in GEM_CLASSES:
        gem = str(rng.choice(["ruby", "sapphire", "emerald", "diamond", "amethyst", "citrine"]))
    gem_img = render_small_gem(rng, gem, stone).astype(np.float32)
    circ = np.zeros((stone, stone), np.float32)
    cv2.circle(circ, (stone // 2, stone // 2), int(stone * 0.34), 1.0, -1, cv2.LINE_AA)
    circ = cv2.GaussianBlur(circ, (0, 0), 1.0)
    sx, sy = int(pos[0] - stone / 2), int(pos[1] - stone / 2)
    if sx >= 0 and sy >= 0 and sx + stone <= w and sy + stone <= h:
        roi = colour[sy:sy + stone, sx:sx + stone]
        roi[:] = roi * (1 - circ[..., None]) + gem_img * circ[..., None]
        if alpha is not None:
            alpha[sy:sy + stone, sx:sx + stone] = np.maximum(alpha[sy:sy + stone, sx:sx + stone], circ)


def _tube_ring(img: np.ndarray, centre, radius: float, tilt: float, angle: float, thick: float,
               metal: np.ndarray) -> None:
    """A thick metal ring seen at an angle: concentric arcs shaded like a tube."""
    steps = max(3, int(thick))
    for k in range(steps):
        f = k / (steps - 1)
        rr = radius - thick / 2 + f * thick
        shade = 0.45 + 0.75 * math.sin(math.pi * f) ** 1.5 + (0.25 if 0.55 < f < 0.7 else 0.0)
        cv2.ellipse(img, (int(centre[0]), int(centre[1])), (max(1, int(rr)), max(1, int(rr * tilt))),
                    angle, 0, 360, tuple(float(v) for v in np.clip(metal * shade, 0, 255)), 2, cv2.LINE_AA)


def render_ring_product(rng: np.random.Generator, gem: str | None = None) -> np.ndarray:
    """The same rings as :func:`render_worn` draws, as product photos: close up, no hand,
    on white, beige or the same store backdrops (so the junk head learns that fingers,
    not a ring or a skin-coloured backdrop, make a hand photo)."""
    w = int(rng.integers(500, 1000))
    h = int(np.clip(w * rng.uniform(0.75, 1.35), 450, 1200))
    pick = rng.random()
    if pick < 0.35:
        img = np.full((h, w, 3), rng.uniform(225, 255), np.float32)
    elif pick < 0.65:  # beige, blush or sand: skin-coloured, and no hand
        tone = np.array(SKIN_TONES[int(rng.integers(4))], np.float32)
        img = np.broadcast_to(tone * rng.uniform(0.8, 1.05), (h, w, 3)).copy()
        yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img *= 0.9 + 0.15 * yy
    else:
        img = _backdrop(rng, w, h)
    if rng.random() < 0.35:
        _box(rng, img)
    s = min(w, h)
    metal = np.array(jewelry.METALS[str(rng.choice(["gold", "gold", "rose", "silver", "white"]))], np.float32)
    metal = metal * rng.uniform(0.85, 1.1)
    for n in range(int(rng.choice([1, 1, 1, 2]))):
        radius = s * rng.uniform(0.18, 0.36)
        centre = np.array([w * rng.uniform(0.35, 0.65), h * rng.uniform(0.4, 0.65)]) + n * radius * 0.5
        tilt = rng.uniform(0.3, 0.9)
        _tube_ring(img, centre, radius, tilt, rng.uniform(-30, 30), radius * rng.uniform(0.12, 0.35), metal)
        if rng.random() < 0.7:
            top = centre - np.array([0, radius * tilt])
            _ring_top(rng, img, None, top, int(radius * rng.uniform(0.6, 1.2)), gem)
    img += rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 0.6), 0, 255).astype(np.uint8)


def _box(rng: np.random.Generator, img: np.ndarray) -> None:
    """A ring box (kraft, blush, rose gold, black or green) the ring stands on, in place."""
    h, w = img.shape[:2]
    colour = np.array([(196, 160, 120), (225, 185, 165), (200, 150, 130), (30, 30, 32), (40, 70, 60),
                       (230, 215, 200)][int(rng.integers(6))], np.float32) * rng.uniform(0.85, 1.1)
    top_y, front_y = int(h * rng.uniform(0.45, 0.6)), int(h * rng.uniform(0.7, 0.85))
    x0, x1 = int(w * rng.uniform(-0.1, 0.15)), int(w * rng.uniform(0.85, 1.1))
    skew = int(w * rng.uniform(0.03, 0.12))
    top = np.array([[x0 + skew, top_y], [x1 - skew, top_y], [x1, front_y], [x0, front_y]], np.int32)
    cv2.fillPoly(img, [top], tuple(float(v) for v in np.clip(colour * 1.12, 0, 255)), cv2.LINE_AA)
    cv2.rectangle(img, (x0, front_y), (x1, h), tuple(float(v) for v in colour * 0.85), -1)
    slot_y = (top_y + front_y) // 2
    cv2.line(img, ((x0 + x1) // 2 - w // 8, slot_y), ((x0 + x1) // 2 + w // 8, slot_y),
             tuple(float(v) for v in colour * 0.4), max(2, h // 80), cv2.LINE_AA)
    if rng.random() < 0.5:  # the open lid behind
        cv2.rectangle(img, (x0 + skew, int(top_y - h * 0.35)), (x1 - skew, top_y),
                      tuple(float(v) for v in colour * 0.7), -1)

