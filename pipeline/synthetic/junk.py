"""The images real stores mix among product photos, rendered procedurally.

* certificate scans: a lab report with real rendered text, a ruled table, a seal,
  a barcode and a small photo of the stone, sometimes scanned askew;
* photos of a hand holding the stone, in several skin tones, with fingers, nails,
  creases and shading;
* broken files: truncated and corrupt JPEGs, an HTML error page, and a
  decompression bomb (a small PNG that claims a huge canvas);
* near copies of a photo: resized, re-encoded, slightly cropped, brightened.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw

from pipeline.core.plots import font
from pipeline.synthetic.gems import GEM_CLASSES, render_small_gem, rgb_of

LABS = ("International Gemological Institute", "Gem Research Laboratory",
        "Swiss Gemmological Bureau", "American Gem Testing Lab", "Colombo Gem Authority")
CLARITY = ("Eye clean", "VVS1", "VVS2", "VS1", "VS2", "SI1", "Slightly included")
TREATMENT = ("No indication of heating", "Heated", "Minor oil", "None detected")
WORDS = tuple(
    "this report describes the characteristics of the gemstone examined at the time of testing "
    "using standard gemmological instruments the results are not a guarantee of value and apply "
    "only to the stone described origin opinion is based on inclusion study and spectroscopy".split()
)

# Skin tones from very light to very dark (RGB), the hand filter must handle all of them.
SKIN_TONES = ((255, 219, 190), (241, 194, 155), (224, 172, 128), (198, 140, 96),
              (160, 105, 70), (120, 76, 50), (86, 55, 38))


def render_certificate(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A gem lab report as an RGB uint8 image: a full report page, or (as stores most often
    show them) a wallet-size report card, sometimes as a 300–600 px thumbnail."""
    if rng.random() < 0.5:
        card = render_report_card(rng, gem, product_id)
        if rng.random() < 0.5:
            side = int(rng.integers(300, 601))
            f = side / max(card.shape[:2])
            card = cv2.resize(card, (int(card.shape[1] * f), int(card.shape[0] * f)),
                              interpolation=cv2.INTER_AREA)
        return card
    return render_report_page(rng, gem, product_id)


def photographed_certificate(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A lab report as stores photograph it (RGB uint8): a folded booklet standing in
    perspective on a studio backdrop, a report page beside the lab's large round seal, a
    close-up of the report under its gold seal with the stone resting on it (often a wide
    banner), or the report's folder covers fanned out beside the jewel's box."""
    look = rng.random()
    if look < 0.2:
        return report_closeup(rng, gem, product_id)
    if look < 0.4:
        return report_folders(rng, gem, product_id)
    page = render_report_page(rng, gem, product_id) if rng.random() < 0.6 \
        else render_report_card(rng, gem, product_id)
    w = int(rng.integers(500, 1000))
    h = int(np.clip(w * rng.uniform(0.45, 1.0), 300, 900))
    bg = rng.uniform(150, 250) if rng.random() < 0.7 else rng.uniform(40, 110)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.full((h, w, 3), bg, np.float32) * (0.85 + 0.2 * yy)
    ph, pw = page.shape[:2]
    if rng.random() < 0.55:  # folded booklet: two or three panels at alternating angles
        panels = int(rng.choice([2, 3]))
        cuts = np.linspace(0, pw, panels + 1).astype(int)
        left = w * rng.uniform(0.05, 0.2)
        span = (w * rng.uniform(0.65, 0.9) - left) / panels
        top, bottom = h * rng.uniform(0.05, 0.2), h * rng.uniform(0.8, 0.95)
        lean = (bottom - top) * rng.uniform(0.04, 0.12)
        for k in range(panels):
            part = page[:, cuts[k]:cuts[k + 1]].astype(np.float32)
            x0, x1 = left + k * span, left + (k + 1) * span
            up = lean if k % 2 == 0 else 0.0
            down = 0.0 if k % 2 == 0 else lean
            dst = np.float32([[x0, top + up], [x1, top + down], [x1, bottom - down], [x0, bottom - up]])
            lit = part * (1.0 if k % 2 == 0 else rng.uniform(0.78, 0.92))  # the panel turned away
            img = _lay(img, lit, dst, w * 0.015, (w * 0.015, h * 0.02), 0.35)
    else:  # the report beside its lab's seal
        f = min(h * rng.uniform(0.7, 0.95) / ph, w * 0.5 / pw)
        small = cv2.resize(page, (max(8, int(pw * f)), max(8, int(ph * f))), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        x0, y0 = int(w * rng.uniform(0.45, 0.5)), (h - sh) // 2
        img[y0:y0 + sh, x0:x0 + sw] = small[: h - y0, : w - x0]
        r = int(min(h * 0.4, w * 0.22))
        c = (int(w * 0.25), h // 2)
        ink = tuple(float(v) for v in rng.choice([(30, 60, 140), (150, 110, 60), (40, 40, 40), (20, 90, 70)]))
        cv2.circle(img, c, r, ink, -1, cv2.LINE_AA)
        cv2.circle(img, c, int(r * 0.8), (250, 250, 250), max(2, r // 20), cv2.LINE_AA)
        cv2.circle(img, c, int(r * 0.55), (250, 250, 250), -1, cv2.LINE_AA)
        for k in range(24):  # the lettering's dots round the seal
            a = 2 * math.pi * k / 24
            p = (int(c[0] + r * 0.9 * math.cos(a)), int(c[1] + r * 0.9 * math.sin(a)))
            cv2.circle(img, p, max(1, r // 22), (250, 250, 250), -1, cv2.LINE_AA)
        pts = np.array([(c[0] + r * 0.45 * math.cos(a), c[1] + r * 0.45 * math.sin(a))
                        for a in np.linspace(0, 2 * math.pi, 7)[:-1]], np.int32)
        cv2.fillPoly(img, [pts], ink, cv2.LINE_AA)
    img += rng.normal(0, 2, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


GOLD = (212, 175, 55)


def _lay(img: np.ndarray, part: np.ndarray, dst: np.ndarray, blur: float, shift: tuple[float, float],
         dark: float) -> np.ndarray:
    """``part`` (float RGB) laid on ``img`` with its corners at ``dst`` (a perspective), over
    its own soft shadow: blurred by ``blur`` px, offset by ``shift``, darkening by ``dark``."""
    h, w = img.shape[:2]
    ph, pw = part.shape[:2]
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(part, m, (w, h))
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), m, (w, h))[..., None]
    shadow = cv2.GaussianBlur(mask[..., 0], (0, 0), blur)
    shadow = cv2.warpAffine(shadow, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (w, h))
    img *= (1 - dark * shadow)[..., None]
    return img * (1 - mask) + warped * mask


def _gold_seal(rng: np.random.Generator, img: np.ndarray, c: tuple[float, float], r: float,
               squash: float) -> None:
    """A gold-foil sunburst seal (its emblem embossed), flattened by ``squash`` as the page tilts."""
    n = int(rng.integers(24, 40))
    a = np.linspace(0, 2 * math.pi, 2 * n, endpoint=False)
    rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.8, 0.88))
    pts = np.stack([c[0] + rad * np.cos(a), c[1] + rad * np.sin(a) * squash], 1).astype(np.int32)
    gold = np.array(GOLD, np.float32) * rng.uniform(0.85, 1.1)
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.fillPoly(mask, [pts], 1.0, cv2.LINE_AA)
    h, w = mask.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    shine = 0.8 + 0.4 * np.cos((xx - c[0]) / max(r, 1) * 2.5 + (yy - c[1]) / max(r, 1))
    foil = np.clip(gold[None, None] * shine[..., None], 0, 255)
    img[:] = img * (1 - mask[..., None]) + foil * mask[..., None]
    dark = tuple(float(v) for v in np.clip(gold * 0.7, 0, 255))
    for f in (0.72, 0.66):
        cv2.ellipse(img, (int(c[0]), int(c[1])), (int(r * f), int(r * f * squash)), 0, 0, 360, dark,
                    max(1, int(r * 0.02)), cv2.LINE_AA)
    shield = np.array([(-0.3, -0.3), (0.3, -0.3), (0.3, 0.05), (0, 0.35), (-0.3, 0.05)], np.float32)
    shield = (c + shield * np.float32([r, r * squash])).astype(np.int32)
    cv2.polylines(img, [shield], True, dark, max(1, int(r * 0.03)), cv2.LINE_AA)
    cv2.line(img, tuple(shield[0]), tuple(shield[3]), dark, max(1, int(r * 0.02)), cv2.LINE_AA)


def report_closeup(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A close-up of a lab report lying at an angle, its gold seal in focus with the stone
    resting on it and the grading text fading out of focus (RGB uint8; often a wide banner)."""
    from pipeline.synthetic.jewelry import _paste_stone

    page = render_report_page(rng, gem, product_id).astype(np.float32)
    w = int(rng.integers(600, 1100))
    h = int(w / float(rng.choice([3.0, 2.4, 1.6, 1.0])))
    ph, pw = page.shape[:2]
    zoom = rng.uniform(1.8, 3.2)
    cw = int(min(pw, pw / zoom * max(1.0, w / h) / 1.3))
    ch = int(min(ph, cw * h / w))
    # anywhere on the report, as long as some of it shows (a blank margin with a seal on it
    # would be no certificate at all): a few tries, then the most inked of them
    ink = page.mean(axis=2) < 160
    tries = []
    for _ in range(6):
        x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
        tries.append((float(ink[y0:y0 + ch, x0:x0 + cw].mean()), x0, y0))
        if tries[-1][0] >= 0.01:
            break
    _, x0, y0 = max(tries)
    part = cv2.resize(page[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    tilt = rng.uniform(0.05, 0.25) * w
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[tilt, -h * 0.05], [w - tilt * rng.uniform(0.3, 1), 0], [w + tilt, h],
                      [-tilt, h * 1.05]])
    img = cv2.warpPerspective(part, cv2.getPerspectiveTransform(src, dst), (w, h),
                              borderMode=cv2.BORDER_REFLECT)
    img = 255 - (255 - img) * rng.uniform(0.35, 0.8)  # bright, low-contrast studio light
    squash = rng.uniform(0.55, 0.9)
    r = min(h * rng.uniform(0.3, 0.45) / squash, w * 0.25)
    c = (w * rng.uniform(0.55, 0.8), h * rng.uniform(0.45, 0.6))
    _gold_seal(rng, img, c, r, squash)
    _paste_stone(rng, img, c[0] + r * rng.uniform(-0.3, 0.5), c[1] - r * squash * rng.uniform(0.1, 0.6),
                 int(r * rng.uniform(0.45, 0.8)))
    # depth of field: sharp along the seal's line, blurred with distance from it
    blur = cv2.GaussianBlur(img, (0, 0), rng.uniform(2.5, 5.0))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    d = np.hypot((xx - c[0]) / w, (yy - c[1]) / h * 0.6)
    k = np.clip((d - 0.15) / 0.3, 0, 1)[..., None]
    img = img * (1 - k) + blur * k
    img += rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# long: one drawing in the order its seeded generator is consumed
def report_folders(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A lab report's folder covers fanned out on a white table, a coloured band down each
    cover reading ``... GRADING REPORT`` beside the lab's logo, with the jewel's box and a stone
    or ring (RGB uint8)."""
    from pipeline.synthetic.jewelry import METALS, _band, _paste_stone

    w = int(rng.integers(500, 900))
    h = int(w * rng.uniform(0.8, 1.45))
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.full((h, w, 3), rng.uniform(225, 252), np.float32) * (0.9 + 0.1 * yy)
    band = tuple(int(v) for v in rng.choice([GOLD, (150, 120, 60), (25, 40, 90), (20, 80, 60),
                                              (120, 25, 40)]))
    paper = tuple(int(v) for v in rng.uniform([236, 234, 225], [252, 252, 246]))
    lab = str(rng.choice(LABS))
    short = "".join(word[0] for word in lab.split() if word[0].isupper())
    title = str(rng.choice(["DIAMOND GRADING REPORT", "GEMSTONE IDENTIFICATION REPORT",
                            "COLORED STONE REPORT"]))
    if rng.random() < 0.6:  # the jewel's box behind the covers
        bx, by = w * rng.uniform(0.35, 0.55), h * rng.uniform(0.15, 0.3)
        bw, bh = w * rng.uniform(0.35, 0.5), h * rng.uniform(0.12, 0.2)
        box = np.array([(bx, by), (bx + bw, by + bh * 0.1), (bx + bw * 0.97, by + bh),
                        (bx - bw * 0.03, by + bh * 0.9)], np.int32)
        shade = rng.uniform(15, 50)
        cv2.fillPoly(img, [box], (shade, shade, shade * 1.2), cv2.LINE_AA)
        for k, f in enumerate((0.45, 0.58)):  # the maker's gold lettering, too small to read
            y = int(by + bh * f)
            cv2.line(img, (int(bx + bw * (0.35 + 0.05 * k)), y), (int(bx + bw * (0.65 - 0.05 * k)), y),
                     GOLD, max(1, int(bh * 0.04)), cv2.LINE_AA)
    covers = int(rng.integers(1, 4))
    for k in range(covers):
        cw, ch = 400, int(400 * rng.uniform(1.9, 2.3))
        cover = Image.new("RGB", (cw, ch), paper)
        d = ImageDraw.Draw(cover)
        bw_ = int(cw * rng.uniform(0.16, 0.24))
        d.rectangle([0, 0, bw_, ch], fill=band)
        strip = Image.new("RGB", (ch, bw_), band)
        ImageDraw.Draw(strip).text((ch * 0.35, bw_ // 2), title, fill=paper, font=font(int(bw_ * 0.3)),
                                   anchor="lm")
        cover.paste(strip.rotate(90, expand=True), (0, 0))
        ly = int(ch * rng.uniform(0.12, 0.3))
        lx = bw_ + int(cw * 0.12)
        d.ellipse([lx, ly, lx + 46, ly + 46], outline=band, width=4)
        d.text((lx + 60, ly + 23), short, fill=(25, 25, 30), font=font(54), anchor="lm")
        cov = np.asarray(cover, np.float32)
        x0 = w * (0.02 + 0.16 * k) + rng.uniform(-0.03, 0.03) * w
        top = h * rng.uniform(0.25, 0.42)
        spread = w * rng.uniform(0.45, 0.65)
        dst = np.float32([[x0 + spread * 0.2, top], [x0 + spread * 0.85, top + h * 0.02],
                          [x0 + spread * 1.1, h * 1.02], [x0, h * 0.98]])
        img = _lay(img, cov, dst, w * 0.01, (-w * 0.01, h * 0.005), 0.25)
    if rng.random() < 0.5:
        _paste_stone(rng, img, w * rng.uniform(0.5, 0.75), h * rng.uniform(0.55, 0.8),
                     int(w * rng.uniform(0.1, 0.18)))
    else:
        r = w * rng.uniform(0.04, 0.07)
        cx, cy = w * rng.uniform(0.45, 0.7), h * rng.uniform(0.38, 0.5)
        metal = np.array(METALS[str(rng.choice(list(METALS)[:3]))], np.float32)
        _band(img, (cx, cy), (r, r * 0.5), 0.0, max(2, int(r * 0.3)), metal)
        _paste_stone(rng, img, cx, cy - r * 0.5, int(r * 1.6))
    img += rng.normal(0, 1.5, (h, w, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _qr(rng: np.random.Generator, d: ImageDraw.ImageDraw, x: int, y: int, size: int, ink) -> None:
    """A QR-code-like square: three finder patterns and random modules."""
    n = 25
    cell = max(1, size // n)
    bits = rng.random((n, n)) < 0.5
    for i in range(n):
        for j in range(n):
            if bits[i, j]:
                d.rectangle([x + j * cell, y + i * cell, x + (j + 1) * cell - 1, y + (i + 1) * cell - 1],
                            fill=ink)
    for fx, fy in ((0, 0), (n - 7, 0), (0, n - 7)):
        x0, y0 = x + fx * cell, y + fy * cell
        d.rectangle([x0, y0, x0 + 7 * cell - 1, y0 + 7 * cell - 1], fill=(255, 255, 255))
        d.rectangle([x0, y0, x0 + 7 * cell - 1, y0 + 7 * cell - 1], outline=ink, width=cell)
        d.rectangle([x0 + 2 * cell, y0 + 2 * cell, x0 + 5 * cell - 1, y0 + 5 * cell - 1], fill=ink)


def _cut_diagram(d: ImageDraw.ImageDraw, x: int, y: int, w: int, ink) -> None:
    """A proportion diagram: the stone's profile (crown, girdle, pavilion) with facet lines."""
    h = int(w * 0.6)
    girdle = y + int(h * 0.35)
    table = (x + int(w * 0.3), x + int(w * 0.7))
    prof = [(x, girdle), (table[0], y), (table[1], y), (x + w, girdle), (x + w // 2, y + h)]
    d.polygon(prof, outline=ink, width=2)
    d.line([x, girdle, x + w, girdle], fill=ink, width=1)
    for t in (0.15, 0.3, 0.7, 0.85):
        d.line([x + int(w * t), girdle, x + w // 2, y + h], fill=ink, width=1)
        d.line([x + int(w * t), girdle, table[0] if t < 0.5 else table[1], y], fill=ink, width=1)
    small = font(max(8, w // 12))
    d.text((x + w // 2, y - 4), f"{57 + w % 5}%", fill=ink, font=small, anchor="mb")
    d.text((x + w + 4, girdle), "34.5°", fill=ink, font=small, anchor="lm")


# long: one report card drawn in the order its seeded generator is consumed
def render_report_card(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A lab report card: header band with the lab's name and report number, the stone's
    photo and cut diagram, a grid of grading fields, a QR code, a seal and a signature."""
    w = int(rng.integers(900, 1300))
    h = int(w / rng.uniform(1.45, 2.1))
    paper = tuple(int(c) for c in rng.uniform([236, 232, 220], [255, 253, 250]))
    page = Image.new("RGB", (w, h), paper)
    d = ImageDraw.Draw(page)
    ink = (25, 25, 35)
    band = tuple(int(c) for c in rgb_of(rng.uniform(0, 360), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.5)))
    bh = int(h * rng.uniform(0.13, 0.2))
    d.rectangle([0, 0, w, bh], fill=band)
    lab = str(rng.choice(LABS))
    size = int(bh * 0.38)
    while size > 8 and d.textlength(lab.upper(), font=font(size)) > 0.55 * w:
        size -= 2
    d.text((int(w * 0.03), bh // 2), lab.upper(), fill=(255, 255, 255), font=font(size), anchor="lm")
    report_no = f"{int(rng.integers(10**9, 10**10))}"
    d.text((w - int(w * 0.03), bh // 2), f"REPORT No. {report_no}", fill=(255, 255, 255),
           font=font(int(bh * 0.3)), anchor="rm")
    # left: photo of the stone above its cut diagram
    ph = int(h * 0.36)
    px, py = int(w * 0.03), bh + int(h * 0.06)
    page.paste(Image.fromarray(render_small_gem(rng, gem, ph)), (px, py))
    d.rectangle([px - 2, py - 2, px + ph + 2, py + ph + 2], outline=ink, width=2)
    _cut_diagram(d, px, py + ph + int(h * 0.08), ph, ink)
    # middle: the grading grid
    fields = [("Date", f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}."
                       f"{int(rng.integers(2015, 2026))}"),
              ("Shape", str(rng.choice(["Round Brilliant", "Oval", "Cushion", "Pear", "Emerald"]))),
              ("Measurements",
               f"{rng.uniform(5, 14):.2f} - {rng.uniform(5, 14):.2f} x {rng.uniform(3, 8):.2f} mm"),
              ("Carat Weight", f"{rng.uniform(0.3, 6):.2f} ct"),
              ("Colour Grade", str(rng.choice(["D", "E", "F", "G", "Vivid", "Intense"]))),
              ("Clarity Grade", str(rng.choice(CLARITY))),
              ("Cut Grade", str(rng.choice(["Excellent", "Very Good"]))),
              ("Polish", "Excellent"), ("Symmetry", str(rng.choice(["Excellent", "Very Good"]))),
              ("Fluorescence", str(rng.choice(["None", "Faint", "Medium Blue"]))),
              ("Species", "Natural " + gem.replace("-", " ").title()), ("Reference", product_id)]
    gx, gy = px + ph + int(w * 0.05), bh + int(h * 0.06)
    gw = int(w * 0.45)
    rh = int((h - gy - int(h * 0.08)) / len(fields))
    fs = max(9, int(rh * 0.55))
    for i, (k, v) in enumerate(fields):
        yy = gy + i * rh
        d.text((gx, yy + rh // 2), k, fill=(90, 90, 100), font=font(fs), anchor="lm")
        d.text((gx + gw // 2, yy + rh // 2), v, fill=ink, font=font(fs), anchor="lm")
        d.line([gx, yy + rh, gx + gw, yy + rh], fill=(170, 170, 180), width=1)
    # right: QR code, seal, signature
    qs = int(h * 0.22)
    qx, qy = w - int(w * 0.04) - qs, bh + int(h * 0.06)
    _qr(rng, d, qx, qy, qs, ink)
    sr = int(h * 0.09)
    sx, sy = qx + qs // 2, qy + qs + sr + int(h * 0.06)
    gold = (190, 150, 60)
    d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=gold, outline=(140, 100, 30), width=3)
    d.ellipse([sx - sr + 6, sy - sr + 6, sx + sr - 6, sy + sr - 6], outline=(240, 220, 150), width=2)
    sig = [(qx - int(w * 0.02) + i * 6, h - int(h * 0.1) + 8 * math.sin(i * 1.1 + rng.uniform(0, 3)))
           for i in range(22)]
    d.line(sig, fill=(30, 40, 120), width=2)
    img = np.asarray(page, dtype=np.uint8)
    if rng.random() < 0.35:  # photographed on a desk, a little askew
        bed = tuple(int(c) for c in rng.uniform(40, 200, 3))
        pad = int(0.08 * w)
        canvas = np.full((h + 2 * pad, w + 2 * pad, 3), bed, np.uint8)
        canvas[pad:pad + h, pad:pad + w] = img
        rot = cv2.getRotationMatrix2D((canvas.shape[1] / 2, canvas.shape[0] / 2),
                                      float(rng.uniform(-6, 6)), 1.0)
        img = cv2.warpAffine(canvas, rot, canvas.shape[1::-1], borderValue=bed)
    return img


# long: one lab report drawn line by line in the order its seeded generator is consumed
def render_report_page(rng: np.random.Generator, gem: str, product_id: str) -> np.ndarray:
    """A full-page gem lab report (portrait page or landscape)."""
    portrait = rng.random() < 0.6
    w, h = (850, 1100) if portrait else (1100, 760)
    scale = rng.uniform(0.7, 1.05)
    w, h = int(w * scale), int(h * scale)
    paper = tuple(int(c) for c in rng.uniform([238, 235, 225], [255, 253, 248]))
    page = Image.new("RGB", (w, h), paper)
    d = ImageDraw.Draw(page)
    ink = (20, 25, 40)
    accent = tuple(int(c) for c in rgb_of(rng.uniform(0, 360), 0.6, 0.5))
    m = int(0.04 * w)
    d.rectangle([m, m, w - m, h - m], outline=accent, width=max(2, w // 200))
    d.rectangle([m + 8, m + 8, w - m - 8, h - m - 8], outline=accent, width=1)
    lab = str(rng.choice(LABS))
    y = m + 25
    d.text((w // 2, y), lab.upper(), fill=accent, font=font(int(w * 0.032)), anchor="mt")
    y += int(w * 0.05)
    d.text((w // 2, y), "GEMSTONE IDENTIFICATION REPORT", fill=ink, font=font(int(w * 0.036)),
           anchor="mt")
    y += int(w * 0.07)
    report_no = f"{int(rng.integers(10**8, 10**9))}"
    carat = rng.uniform(0.5, 8)
    rows = [
        ("Report number", report_no),
        ("Date", f"{int(rng.integers(1, 29)):02d} {rng.choice(['Jan', 'Mar', 'Jun', 'Sep', 'Nov'])} "
                 f"{int(rng.integers(2015, 2026))}"),
        ("Reference", product_id),
        ("Species", "Natural " + gem.replace("-", " ").title()),
        ("Shape and cut", f"{rng.choice(['Oval', 'Cushion', 'Round', 'Pear'])} brilliant"),
        ("Carat weight", f"{carat:.2f} ct"),
        ("Measurements", f"{rng.uniform(5, 14):.2f} x {rng.uniform(4, 11):.2f} x "
                         f"{rng.uniform(3, 8):.2f} mm"),
        ("Colour", str(rng.choice(["Vivid", "Intense", "Medium", "Light"])) + " "
                   + gem.replace("-", " ")),
        ("Clarity", str(rng.choice(CLARITY))),
        ("Treatment", str(rng.choice(TREATMENT))),
        ("Origin", str(rng.choice(GEM_CLASSES[gem]["origins"]))),
    ]
    table_w = int(w * (0.58 if portrait else 0.5))
    x0 = m + 30
    fs = int(w * 0.021)
    row_h = int(min(fs * 1.9, (h - m - 110 - y) / (len(rows) + 2)))
    fs = min(fs, int(row_h / 1.5))
    for i, (k, v) in enumerate(rows):
        d.text((x0 + 6, y + i * row_h + row_h // 2), k, fill=ink, font=font(fs), anchor="lm")
        d.text((x0 + table_w // 2, y + i * row_h + row_h // 2), v, fill=ink, font=font(fs),
               anchor="lm")
        d.line([x0, y + (i + 1) * row_h, x0 + table_w, y + (i + 1) * row_h], fill=(120, 120, 130),
               width=1)
    d.rectangle([x0, y, x0 + table_w, y + len(rows) * row_h], outline=ink, width=2)
    d.line([x0 + table_w // 2 - 8, y, x0 + table_w // 2 - 8, y + len(rows) * row_h], fill=ink)
    # photo of the stone
    ph = int(w * 0.22)
    px, py = x0 + table_w + int(w * 0.06), y
    photo = Image.fromarray(render_small_gem(rng, gem, ph))
    page.paste(photo, (px, py))
    d.rectangle([px - 3, py - 3, px + ph + 3, py + ph + 3], outline=ink, width=2)
    # seal
    sr = int(w * 0.07)
    sx, sy = px + ph // 2, py + ph + sr + int(w * 0.06)
    d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], outline=accent, width=4)
    d.ellipse([sx - sr + 10, sy - sr + 10, sx + sr - 10, sy + sr - 10], outline=accent, width=2)
    star = [(sx + (sr * 0.5 if i % 2 == 0 else sr * 0.22) * math.cos(i * math.pi / 5 - math.pi / 2),
             sy + (sr * 0.5 if i % 2 == 0 else sr * 0.22) * math.sin(i * math.pi / 5 - math.pi / 2))
            for i in range(10)]
    d.polygon(star, fill=accent)
    d.text((sx, sy + sr + 8), "CERTIFIED", fill=accent, font=font(int(fs * 0.9)), anchor="mt")
    # comments paragraph
    yy = y + len(rows) * row_h + int(w * 0.04)
    words = list(rng.choice(WORDS, size=int(rng.integers(40, 90))))
    line: list[str] = []
    small = font(int(fs * 0.8))
    while words and yy < h - m - 90:
        line.append(str(words.pop(0)))
        if d.textlength(" ".join(line), font=small) > table_w:
            d.text((x0, yy), " ".join(line[:-1]).capitalize(), fill=(60, 60, 70), font=small)
            line = line[-1:]
            yy += int(fs * 1.2)
    # barcode and signature
    bx, by = x0, h - m - 70
    for _ in range(60):
        bw = int(rng.integers(1, 4))
        d.rectangle([bx, by, bx + bw, by + 45], fill=ink)
        bx += bw + int(rng.integers(1, 4))
    sig = [(w - m - 260 + i * 8, h - m - 60 + 12 * math.sin(i * 0.9 + rng.uniform(0, 3)))
           for i in range(28)]
    d.line(sig, fill=(30, 40, 120), width=2)
    d.line([w - m - 270, h - m - 38, w - m - 30, h - m - 38], fill=ink, width=1)
    d.text((w - m - 150, h - m - 32), "Authorised signature", fill=ink, font=small, anchor="mt")
    img = np.asarray(page, dtype=np.uint8)
    if rng.random() < 0.4:  # scanned askew on a scanner bed
        bed = int(rng.uniform(40, 110))
        pad = int(0.05 * w)
        canvas = np.full((h + 2 * pad, w + 2 * pad, 3), bed, np.uint8)
        canvas[pad:pad + h, pad:pad + w] = img
        rot = cv2.getRotationMatrix2D((canvas.shape[1] / 2, canvas.shape[0] / 2),
                                      float(rng.uniform(-3, 3)), 1.0)
        img = cv2.warpAffine(canvas, rot, canvas.shape[1::-1], borderValue=(bed, bed, bed))
    return img


def _capsule(mask: np.ndarray, p0, p1, r: float) -> None:
    p0 = np.array(p0, float)
    p1 = np.array(p1, float)
    cv2.line(mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1.0, int(2 * r), cv2.LINE_AA)
    cv2.circle(mask, tuple(int(v) for v in p1), int(r), 1.0, -1, cv2.LINE_AA)


# long: one hand drawn stroke by stroke in the order its seeded generator is consumed
def render_hand(rng: np.random.Generator, gem: str) -> np.ndarray:
    """A hand holding a stone between thumb and index finger, or showing it on the palm."""
    w = int(rng.integers(500, 1100))
    h = int(np.clip(w * rng.uniform(0.8, 1.3), 450, 1200))
    bgv = rng.uniform(200, 255)
    img = np.full((h, w, 3), bgv, np.float32) + rng.normal(0, 2, 3).astype(np.float32)
    tone = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32)
    tone = np.clip(tone * rng.uniform(0.92, 1.06) + rng.normal(0, 4, 3), 0, 255)
    s = min(w, h)
    palm_c = np.array([w * rng.uniform(0.4, 0.6), h * rng.uniform(0.62, 0.75)])
    palm_w, palm_h = s * rng.uniform(0.2, 0.26), s * rng.uniform(0.22, 0.28)
    tilt = rng.uniform(-20, 20)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, tuple(int(v) for v in palm_c), (int(palm_w), int(palm_h)), tilt, 0, 360, 1.0, -1,
                cv2.LINE_AA)
    # wrist runs off the bottom border, as in real photos
    _capsule(mask, palm_c, (palm_c[0] + rng.uniform(-0.1, 0.1) * s, h + s * 0.2), palm_w * 0.75)
    a0 = math.radians(tilt)
    fingers = []
    lengths = (0.9, 1.0, 0.93, 0.72)
    for i, ln in enumerate(lengths):
        off = (i - 1.5) / 1.5
        base = palm_c + np.array([off * palm_w * 0.75 * math.cos(a0), -palm_h * 0.85])
        ang = a0 + off * 0.22 + rng.normal(0, 0.06) - math.pi / 2
        length = s * 0.28 * ln * rng.uniform(0.9, 1.1)
        bend = rng.uniform(0.0, 0.5) if i > 0 else rng.uniform(0.4, 0.9)
        mid = base + length * 0.55 * np.array([math.cos(ang), math.sin(ang)])
        tip = mid + length * 0.45 * np.array([math.cos(ang + bend), math.sin(ang + bend)])
        r = palm_w * 0.19 * (0.85 if i == 3 else 1.0)
        _capsule(mask, base, mid, r)
        _capsule(mask, mid, tip, r * 0.92)
        fingers.append((base, mid, tip, r))
    side = -1 if rng.random() < 0.5 else 1
    t_base = palm_c + np.array([side * palm_w * 0.85, -palm_h * 0.1])
    t_ang = math.radians(-90 + side * rng.uniform(35, 60))
    t_mid = t_base + s * 0.14 * np.array([math.cos(t_ang), math.sin(t_ang)])
    t_tip = t_mid + s * 0.11 * np.array([math.cos(t_ang - side * 0.5), math.sin(t_ang - side * 0.5)])
    _capsule(mask, t_base, t_mid, palm_w * 0.24)
    _capsule(mask, t_mid, t_tip, palm_w * 0.2)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.2)
    # shading: light from the top-left, darker towards the silhouette
    dist = cv2.distanceTransform((mask > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    dist = np.clip(dist / (palm_w * 0.25), 0, 1)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    light = 0.93 + 0.1 * (1 - (xx / w + yy / h) / 2)
    shade = (0.72 + 0.28 * dist) * light
    skin = tone[None, None, :] * shade[..., None]
    skin += rng.normal(0, 3, (h, w, 1)).astype(np.float32)
    # soft shadow on the background
    sm = cv2.GaussianBlur(mask, (0, 0), s * 0.02)
    shift = np.float32([[1, 0, s * 0.015], [0, 1, s * 0.02]])
    sm = cv2.warpAffine(sm, shift, (w, h))
    img *= (1 - 0.25 * sm)[..., None]
    img = img * (1 - mask[..., None]) + skin * mask[..., None]
    crease = tone * 0.62
    for base, mid, tip, r in fingers:
        for t in (0.35, 0.75):
            p = mid + (tip - mid) * t if t > 0.5 else base + (mid - base) * (t + 0.5)
            cv2.ellipse(img, tuple(int(v) for v in p), (int(r * 0.8), max(1, int(r * 0.12))),
                        0, 0, 180, tuple(float(c) for c in crease), 1, cv2.LINE_AA)
        nail = tone * 0.35 + np.array([235, 200, 195]) * 0.65
        dirv = (tip - mid) / (np.linalg.norm(tip - mid) + 1e-6)
        npos = tip - dirv * r * 0.35
        cv2.ellipse(img, tuple(int(v) for v in npos), (int(r * 0.55), int(r * 0.7)),
                    math.degrees(math.atan2(dirv[1], dirv[0])) + 90, 0, 360,
                    tuple(float(c) for c in nail), -1, cv2.LINE_AA)
    # the stone: between thumb and index tip, or on the palm
    g = int(s * rng.uniform(0.1, 0.18))
    gem_img = render_small_gem(rng, gem, g).astype(np.float32)
    circle = np.zeros((g, g), np.float32)
    cv2.circle(circle, (g // 2, g // 2), int(g * 0.37), 1.0, -1, cv2.LINE_AA)
    spot = (fingers[0][2] + t_tip) / 2 if rng.random() < 0.6 else palm_c
    x0, y0 = int(spot[0] - g / 2), int(spot[1] - g / 2)
    x0, y0 = int(np.clip(x0, 0, w - g)), int(np.clip(y0, 0, h - g))
    region = img[y0:y0 + g, x0:x0 + g]
    region[:] = region * (1 - circle[..., None]) + gem_img * circle[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- encoding


def encode(img: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """Encode an RGB uint8 array as JPEG, PNG or WEBP bytes (deterministic)."""
    pil = Image.fromarray(img)
    buf = io.BytesIO()
    if fmt == "JPEG":
        pil.save(buf, "JPEG", quality=quality, optimize=False)
    elif fmt == "PNG":
        pil.save(buf, "PNG", compress_level=3)
    elif fmt == "WEBP":
        pil.save(buf, "WEBP", quality=quality, method=2)
    else:
        raise ValueError(f"unsupported format {fmt}")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


NEAR_KINDS = ("resize", "reencode", "crop", "brightness")


def plan_near(rng: np.random.Generator, kind: str, width: int, height: int) -> dict:
    """Draw the parameters of a near copy of a ``width`` × ``height`` photo.

    Args:
        rng: Seeded generator.
        kind: One of :data:`NEAR_KINDS`.
        width: Width of the original.
        height: Height of the original.

    Returns:
        A recipe for :func:`apply_near` and :func:`map_box`.
    """
    recipe: dict = {"kind": kind, "fmt": "JPEG", "quality": int(rng.integers(70, 92))}
    if kind == "resize":
        f = float(rng.uniform(0.55, 0.85))
        recipe["size"] = [max(32, int(width * f)), max(32, int(height * f))]
        recipe["orig"] = [width, height]
    elif kind == "reencode":
        recipe["fmt"] = str(rng.choice(["JPEG", "WEBP", "PNG"]))
        recipe["quality"] = int(rng.integers(60, 80))
    elif kind == "crop":
        f = float(rng.uniform(0.03, 0.05))
        recipe["offset"] = [int(width * f * rng.uniform(0, 1)), int(height * f * rng.uniform(0, 1))]
        recipe["size"] = [int(width * (1 - f)), int(height * (1 - f))]
    elif kind == "brightness":
        recipe["delta"] = int(rng.uniform(12, 30) * (1 if rng.random() < 0.5 else -1))
    else:
        raise ValueError(f"unknown near-copy kind {kind!r}")
    return recipe


def apply_near(data: bytes, recipe: dict) -> bytes:
    """Make the near copy described by ``recipe`` (deterministic)."""
    img = decode(data)
    kind = recipe["kind"]
    if kind == "resize":
        img = cv2.resize(img, tuple(recipe["size"]), interpolation=cv2.INTER_AREA)
    elif kind == "crop":
        (dx, dy), (cw, ch) = recipe["offset"], recipe["size"]
        img = img[dy:dy + ch, dx:dx + cw]
    elif kind == "brightness":
        img = np.clip(img.astype(np.int16) + recipe["delta"], 0, 255).astype(np.uint8)
    return encode(np.ascontiguousarray(img), recipe["fmt"], recipe["quality"])


def map_box(box: list[int] | None, recipe: dict) -> list[int] | None:
    """The stone's box in the near copy, given its box in the original."""
    if box is None:
        return None
    if recipe["kind"] == "resize":
        (nw, nh), (w, h) = recipe["size"], recipe["orig"]
        return [int(box[0] * nw / w), int(box[1] * nh / h), math.ceil(box[2] * nw / w),
                math.ceil(box[3] * nh / h)]
    if recipe["kind"] == "crop":
        (dx, dy), (cw, ch) = recipe["offset"], recipe["size"]
        return [max(0, box[0] - dx), max(0, box[1] - dy), min(cw, box[2] - dx), min(ch, box[3] - dy)]
    return list(box)


def truncated(data: bytes, rng: np.random.Generator) -> bytes:
    """The first 35–70% of an encoded image: what a dropped connection leaves."""
    return data[: int(len(data) * rng.uniform(0.35, 0.7))]


def corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    """A valid-looking header followed by garbage."""
    head = data[:64]
    return head + rng.integers(0, 256, len(data) - 64, dtype=np.uint8).tobytes()


HTML_ERROR = (b"<!DOCTYPE html><html><head><title>Image unavailable</title></head>"
              b"<body><h1>Sorry, this image is temporarily unavailable</h1>"
              b"<p>Please try again later.</p></body></html>")


@lru_cache(maxsize=2)
def decompression_bomb(side: int = 20000) -> bytes:
    """A tiny grayscale PNG that decodes to ``side``² pixels (400 MP by default).

    Built row by row with one shared compressor, so making it needs no huge buffer.
    """

    def chunk(tag: bytes, payload: bytes) -> bytes:
        body = tag + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" + b"\xff" * side
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))
