"""The demo store's catalog: products, their images, and the ground truth.

A catalog is a pure function of its options (seed, classes, products per class,
epoch; or a folder of labelled images). Building one draws only *plans*; image
bytes are rendered on demand by :meth:`Catalog.render`. Epochs model a store's
stock changing between weekly refreshes: from one epoch to the next a few
products are removed, a few are added and a few images are re-shot at the same
URL (new bytes, new ETag); everything else is byte-identical.

Example:
    >>> cat = Catalog.generate(CatalogOptions(seed=7, classes=3, products_per_class=5))
    >>> entry = next(iter(cat.images.values()))
    >>> data, content_type = cat.render(entry)
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.synthetic import jewelry, junk, worn
from pipeline.synthetic.gems import GEM_CLASSES, draw_gem, plan_gem, plan_stone
from pipeline.synthetic.seeds import rng_for

logger = logging.getLogger(__name__)

def _render_code() -> str:
    """A fingerprint of the code that draws the store's images."""
    h = hashlib.sha1()
    drawing = Path(junk.__file__).parent  # pipeline/synthetic
    for f in (drawing / "gems.py", drawing / "junk.py", Path(__file__), drawing / "worn.py",
              drawing / "jewelry.py"):
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


RENDER_CODE = _render_code()
BASE_DATE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
EXT_OF = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
CTYPE_OF = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
            "BMP": "image/bmp", "TIFF": "image/tiff"}

#: what a generated store sells: its classes
KINDS_OF = {"gems": tuple(GEM_CLASSES), "jewelry": jewelry.KINDS}
#: a jewelry store's product page: the material and the colour word of each metal
MATERIALS = {"gold": ("yellow gold", "yellow"), "silver": ("sterling silver", "silver"),
             "rose": ("rose gold", "rose"), "white": ("white gold", "white"),
             "black": ("black rhodium", "black")}

# Share of products that carry each extra image (generated mode).
RATES = {"certificate": 0.12, "hand": 0.10, "dup_exact": 0.05, "dup_near": 0.06,
         "truncated": 0.012, "corrupt": 0.012, "html": 0.01, "oversized": 0.006}
#: certificates photographed (booklets, beside a seal, close-ups, folder covers), hands as
#: fingers wearing a ring
REAL_LOOK_SHARE = 0.35
P_REMOVE = 0.05   # per product and epoch
P_NEW = 0.08      # new products per class and epoch, as a share of products_per_class
P_RESHOOT = 0.04  # per image and epoch
# Share of a catalog's images that the three above add, change or remove from one epoch to
# the next (measured on the default catalog); ``--churn`` scales all three to another share.
DEFAULT_CHURN = 0.17


@dataclass(frozen=True)
class ImageEntry:
    """One image URL of the store.

    Attributes:
        key: Unique key (``<product_id>/<n>``), also the URL's identity.
        product_id: Owning product.
        label: The product's class.
        filename: File name in the URL.
        kind: photo, certificate, hand, dup_exact, dup_near, truncated, corrupt, html,
            oversized, or file (folder mode).
        junk: Ground-truth junk type, ``None`` for a product photo.
        dup_group: Images sharing it show the same photo.
        version: Bumped when the image is re-shot at the same URL.
        version_epoch: Epoch in which the current version appeared.
        fmt: Encoded format.
        source: Key of the source photo (duplicates, broken files) or a file path.
        recipe: Near-copy recipe.
    """

    key: str
    product_id: str
    label: str
    filename: str
    kind: str
    junk: str | None
    dup_group: str
    version: int = 0
    version_epoch: int = 0
    fmt: str = "JPEG"
    source: str | None = None
    recipe: dict | None = field(default=None, compare=False, hash=False)
    salt: str = ""  # the catalog's render identity (seed + drawing code), see Catalog


    @property
    def url(self) -> str:
        return f"/cdn/img/full/{self.product_id}/{self.filename}"

    @property
    def thumb_url(self) -> str:
        return f"/cdn/img/w_200/{self.product_id}/{self.filename}"

    @property
    def etag(self) -> str:
        ident = f"{self.salt}|{self.key}|{self.kind}|{self.version}|{self.source}|{self.fmt}|{self.label}"
        return '"' + hashlib.sha1(ident.encode()).hexdigest()[:20] + '"'


@dataclass
class Product:
    """A product page."""

    product_id: str
    label: str
    title: str
    attrs: dict[str, str]
    images: list[ImageEntry]
    born: int = 0


@dataclass(frozen=True)
class CatalogOptions:
    """What the catalog is made from (the storefront's catalog flags)."""

    seed: int = 0
    classes: int | tuple[str, ...] = 12
    products_per_class: int = 30
    epoch: int = 0
    catalog: str | None = None
    junk: tuple[tuple[str, str], ...] = ()
    min_images: int = 2
    max_images: int = 6
    junk_scale: float = 1.0
    churn: float | None = None  # share of images changing per epoch; None: DEFAULT_CHURN
    kind: str = "gems"  # generated: a gem store (loose stones) or a jewelry store (KINDS_OF)

    @property
    def churn_scale(self) -> float:
        return 1.0 if self.churn is None else self.churn / DEFAULT_CHURN


class Catalog:
    """Products and images of one epoch of the store."""

    def __init__(self, options: CatalogOptions, products: list[Product]) -> None:
        self.options = options
        # the ETag (and the storefront's render cache key) must change whenever the bytes
        # would: another seed draws other pictures under the same keys, and so does a
        # change to the drawing code
        salt = hashlib.sha1(f"{options.seed}|{options.junk_scale}|{RENDER_CODE}".encode()).hexdigest()[:12]
        for p in products:
            p.images = [replace(e, salt=salt) for e in p.images]
        self.products = {p.product_id: p for p in products}
        self.categories = sorted({p.label for p in products})
        self.by_label: dict[str, list[Product]] = {c: [] for c in self.categories}
        for p in products:
            self.by_label[p.label].append(p)
        self.images: dict[str, ImageEntry] = {}
        for p in products:
            for e in p.images:
                self.images[e.url] = e
        self._by_key = {e.key: e for e in self.images.values()}
        self._sources: dict[str, ImageEntry] = {}
        self._plans: dict[str, object] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, options: CatalogOptions) -> Catalog:
        """Generated or folder catalog, as the options say."""
        return cls.from_folder(options) if options.catalog else cls.generate(options)

    @classmethod
    def generate(cls, o: CatalogOptions) -> Catalog:
        """A procedurally generated gem or jewelry store (``o.kind``)."""
        if o.kind not in KINDS_OF:
            raise ValueError(f"--kind must be one of {', '.join(KINDS_OF)}, got {o.kind!r}")
        names = list(KINDS_OF[o.kind])
        if isinstance(o.classes, int):
            if not 1 <= o.classes <= len(names):
                raise ValueError(f"--classes must be 1..{len(names)} for a {o.kind} store, "
                                 f"got {o.classes}")
            labels = names[: o.classes]
        else:
            unknown = [c for c in o.classes if c not in names]
            if unknown:
                raise ValueError(f"unknown {o.kind} classes {unknown}; known: {', '.join(names)}")
            labels = list(o.classes)
        slots: list[tuple[str, int, int]] = []  # (label, number, born)
        for label in labels:
            slots += [(label, n, 0) for n in range(o.products_per_class)]
            base = o.products_per_class
            for k in range(1, o.epoch + 1):
                n_new = _n_new(o, label, k)
                slots += [(label, base + j, k) for j in range(n_new)]
                base += n_new
        alive = [s for s in slots if not _removed(o, s[0], s[1], s[2])]
        all_base = [(lab, n) for lab in labels for n in range(o.products_per_class)]
        products = [_gen_product(o, lab, n, born, all_base) for lab, n, born in alive]
        return cls(o, products)

    @classmethod
    def from_folder(cls, o: CatalogOptions) -> Catalog:
        """A store serving a labelled folder tree ``<class>/<images>`` plus junk folders."""
        root = Path(o.catalog or "")
        if not root.is_dir():
            raise ValueError(f"--catalog {root}: not a folder")
        rng = rng_for(o.seed, "folder")
        products: list[Product] = []
        prefixes: dict[str, str] = {}  # product-id prefix → the class folder that has it
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            label = class_dir.name
            prefix = folder_prefix(label)
            if prefix in prefixes:
                raise ValueError(f"--catalog {root}: the class folders {prefixes[prefix]!r} and "
                                 f"{label!r} would share product ids ({prefix}-…): rename one")
            prefixes[prefix] = label
            i = n = 0
            while i < len(files):
                k = int(rng.integers(1, 5))
                chunk, i = files[i:i + k], i + k
                pid = f"{prefix}-{n:04d}"
                # epoch 0 serves every file; later epochs remove a few products
                gone_at = int(rng.integers(1, 4)) if rng.random() < 0.08 * o.churn_scale else 10**9
                n += 1
                if gone_at <= o.epoch:
                    continue
                images = [_file_entry(pid, label, j, f, None) for j, f in enumerate(chunk)]
                attrs = {"sku": pid, "price": f"{rng.uniform(40, 4000):.2f}"}
                products.append(Product(pid, label, f"{label.title()} {pid}", attrs, images, 0))
        if not products:
            raise ValueError(f"--catalog {root}: no <class>/<image> files found")
        for kind, path in o.junk:
            jdir = Path(path)
            if not jdir.is_dir():
                raise ValueError(f"--junk {kind}={path}: not a folder")
            for f in sorted(x for x in jdir.iterdir() if x.suffix.lower() in IMAGE_EXTS):
                p = products[int(rng.integers(len(products)))]
                p.images.append(_file_entry(p.product_id, p.label, len(p.images), f, kind))
        return cls(o, products)

    # ------------------------------------------------------------------ rendering
    def entry_by_key(self, key: str) -> ImageEntry | None:
        return self._by_key.get(key)

    def piece(self, product_id: str) -> Piece:
        """The metal and stone of a generated jewelry product (one for all its photos)."""
        label = _label_of_pid(product_id)
        return piece_of(self.options.seed, label, int(product_id.rsplit("-", 1)[1]))

    def _gem_of(self, e: ImageEntry) -> str:
        """The gem a junk picture of ``e``'s product names (a certificate, a worn ring)."""
        if self.options.kind != "jewelry" or e.kind == "file":
            return e.label
        return self.piece(e.product_id).gem or "diamond"

    def _photo_plan(self, e: ImageEntry):
        if self.options.kind == "jewelry":
            return None  # a jewelry photo has no stone box in the truth
        plan = self._plans.get(e.key)
        if plan is None:
            pid, _idx = e.key.split("/")
            label, n = _label_of_pid(pid), int(pid.rsplit("-", 1)[1])
            stone = plan_stone(rng_for(self.options.seed, "stone", label, n), label)
            plan = plan_gem(rng_for(self.options.seed, "photo", e.key, e.version), label, stone)
            if len(self._plans) > 50_000:
                self._plans.clear()
            self._plans[e.key] = plan
        return plan

    def source_entry(self, key: str) -> ImageEntry:
        """Version 0 of the photo a duplicate or broken file was made from.

        Copies are always made from the first shot of the source, even after the
        source was re-shot or its product removed, so the ground truth's
        ``dup_group`` (``<key>@0``) stays exact.
        """
        current = self._by_key.get(key)
        if current is not None and current.version == 0 and current.kind == "photo":
            return current
        found = self._sources.get(key)
        if found is None:
            pid, idx = key.split("/")
            label = _label_of_pid(pid)
            found = ImageEntry(key, pid, label, f"{pid.lower()}-{int(idx) + 1}.jpg", "photo", None,
                               f"{key}@0", fmt=current.fmt if current is not None else "JPEG")
            self._sources[key] = found
        return found

    def bbox(self, e: ImageEntry) -> list[int] | None:
        """Ground-truth stone box of a product photo (``None`` for junk)."""
        if e.kind == "photo":
            plan = self._photo_plan(e)
            return None if plan is None else plan.bbox()
        if e.kind == "dup_exact":
            return self.bbox(self.source_entry(e.source or ""))
        if e.kind == "dup_near":
            return junk.map_box(self.bbox(self.source_entry(e.source or "")), e.recipe or {})
        return None

    def render(self, e: ImageEntry) -> tuple[bytes, str]:
        """The bytes the store serves for ``e`` and their Content-Type."""
        seed = self.options.seed
        if e.kind == "photo":
            q = int(rng_for(seed, "q", e.key, e.version).integers(82, 96))
            if self.options.kind == "jewelry":
                pc = self.piece(e.product_id)
                img = jewelry.render_jewelry(rng_for(seed, "photo", e.key, e.version), e.label,
                                             metal_name=pc.metal, gem=pc.gem, beads=False)
                return junk.encode(img, e.fmt, q), CTYPE_OF[e.fmt]
            return junk.encode(draw_gem(self._photo_plan(e)), e.fmt, q), CTYPE_OF[e.fmt]
        if e.kind == "file":
            data = Path(e.source or "").read_bytes()
            return data, CTYPE_OF.get(_sniff(data), "application/octet-stream")
        rng = rng_for(seed, e.kind, e.key, e.version)
        # a share of the junk as real stores show it (drawn apart, so the rest stays the same)
        real_look = rng_for(seed, "look", e.kind, e.key).random() < REAL_LOOK_SHARE
        gem = self._gem_of(e)
        if e.kind == "certificate":
            draw = junk.photographed_certificate if real_look else junk.render_certificate
            return junk.encode(draw(rng, gem, e.product_id), e.fmt, 90), CTYPE_OF[e.fmt]
        if e.kind == "hand":
            img = worn.render_worn(rng, gem) if real_look else junk.render_hand(rng, gem)
            return junk.encode(img, e.fmt, 90), CTYPE_OF[e.fmt]
        if e.kind == "html":
            return junk.HTML_ERROR, "text/html; charset=utf-8"
        if e.kind == "oversized":
            return junk.decompression_bomb(), "image/png"
        src, ctype = self.render(self.source_entry(e.source or ""))
        if e.kind == "dup_exact":
            return src, ctype
        if e.kind == "dup_near":
            data = junk.apply_near(src, e.recipe or {})
            return data, CTYPE_OF[e.recipe["fmt"] if e.recipe else "JPEG"]
        if e.kind == "truncated":
            return junk.truncated(src, rng), ctype
        if e.kind == "corrupt":
            return junk.corrupt(src, rng), ctype
        raise ValueError(f"unknown image kind {e.kind}")

    def last_modified(self, e: ImageEntry) -> datetime:
        return BASE_DATE + timedelta(days=7 * e.version_epoch)

    def product_modified(self, p: Product) -> datetime:
        """When the product last changed: listed, or one of its images re-shot."""
        return BASE_DATE + timedelta(days=7 * max([p.born, *(e.version_epoch for e in p.images)]))


# ---------------------------------------------------------------------- helpers


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _removed(o: CatalogOptions, label: str, n: int, born: int) -> bool:
    p = P_REMOVE * o.churn_scale
    return any(rng_for(o.seed, "rm", label, n, k).random() < p for k in range(born + 1, o.epoch + 1))


def _n_new(o: CatalogOptions, label: str, epoch: int) -> int:
    """New products of ``label`` in ``epoch``: at least one at the default churn, else drawn."""
    if o.churn is None:
        return max(1, round(P_NEW * o.products_per_class))
    mean = P_NEW * o.churn_scale * o.products_per_class
    whole = int(mean)
    return whole + int(rng_for(o.seed, "new", label, epoch).random() < mean - whole)


def folder_prefix(label: str) -> str:
    """The product-id prefix of a class folder: its whole name, slugged (a long one shortened
    with a hash of the rest), so classes that share their first letters never share ids."""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in label.upper())
    slug = "-".join(part for part in slug.split("-") if part) or "CLASS"
    if len(slug) > 40:
        slug = f"{slug[:32].rstrip('-')}-{hashlib.sha256(label.encode()).hexdigest()[:6].upper()}"
    return slug


def _pid(label: str, n: int) -> str:
    return f"{_slug(label)[:3].upper()}{sum(map(ord, label)) % 97:02d}-{n:04d}"


def _label_of_pid(pid: str) -> str:
    prefix = pid.rsplit("-", 1)[0]
    for label in (*GEM_CLASSES, *jewelry.KINDS):
        if _pid(label, 0).rsplit("-", 1)[0] == prefix:
            return label
    raise KeyError(pid)


def _sniff(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format or "?"
    except Exception:
        return "?"


def _file_entry(pid: str, label: str, j: int, f: Path, junk_kind: str | None) -> ImageEntry:
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    # the URL's file name: the index keeps it unique, the rest only [A-Za-z0-9._-]
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "-" for c in f.name)
    return ImageEntry(key=f"{pid}/{j}", product_id=pid, label=label, filename=f"{j}-{safe}",
                      kind="file", junk=junk_kind, dup_group=digest, fmt="FILE", source=str(f))


# long: one product drawn in the order its seeded generator is consumed: reordering or splitting it
# changes every picture of the demo store
def _gen_product(o: CatalogOptions, label: str, n: int, born: int,
                 all_base: list[tuple[str, int]]) -> Product:
    pid = _pid(label, n)
    rng = rng_for(o.seed, "product", label, n)
    stone = plan_stone(rng_for(o.seed, "stone", label, n), label) if o.kind == "gems" else None
    n_photos = int(rng.integers(o.min_images, o.max_images + 1))
    images: list[ImageEntry] = []

    def version_of(i: int) -> tuple[int, int]:
        v = ve = 0
        for k in range(max(born, 0) + 1, o.epoch + 1):
            if rng_for(o.seed, "reshoot", pid, i, k).random() < P_RESHOOT * o.churn_scale:
                v, ve = v + 1, k
        return v, ve

    def fmt_of() -> str:
        return str(rng.choice(["JPEG", "PNG", "WEBP"], p=[0.7, 0.12, 0.18]))

    for i in range(n_photos):
        v, ve = version_of(i)
        f = fmt_of()
        images.append(ImageEntry(f"{pid}/{i}", pid, label, f"{pid.lower()}-{i + 1}.{EXT_OF[f]}",
                                 "photo", None, f"{pid}/{i}@{v}", v, ve, f))
    extras = [k for k, r in RATES.items() if rng.random() < min(1.0, r * o.junk_scale)]
    for kind in extras:
        i = len(images)
        name = f"{pid.lower()}-{i + 1}"
        if kind == "certificate":
            if rng.random() < 0.5:
                name = f"{pid.lower()}-certificate"
            images.append(ImageEntry(f"{pid}/{i}", pid, label, f"{name}.jpg", kind, "certificate",
                                     f"{pid}/{i}@0"))
        elif kind == "hand":
            if rng.random() < 0.5:
                name = f"{pid.lower()}-in-hand-{i + 1}"
            images.append(ImageEntry(f"{pid}/{i}", pid, label, f"{name}.jpg", kind, "hand",
                                     f"{pid}/{i}@0"))
        elif kind in ("dup_exact", "dup_near"):
            # a photo of another product, sometimes of another class
            src_label, src_n = all_base[int(rng.integers(len(all_base)))]
            if rng.random() < 0.5:
                same = [b for b in all_base if b[0] == label and b[1] != n]
                if same:
                    src_label, src_n = same[int(rng.integers(len(same)))]
            if (src_label, src_n) == (label, n):
                continue
            src_pid = _pid(src_label, src_n)
            src_key = f"{src_pid}/0"
            recipe = None
            f = "JPEG"
            if kind == "dup_near":
                width, height = _photo_size(o, src_label, src_n, src_key)
                recipe = junk.plan_near(rng, str(rng.choice(junk.NEAR_KINDS)), width, height)
                f = recipe["fmt"]
            # the store lists the copied photo under this product's label
            images.append(ImageEntry(f"{pid}/{i}", pid, label, f"{name}.{EXT_OF.get(f, 'jpg')}",
                                     kind, None, f"{src_key}@0", fmt=f, source=src_key,
                                     recipe=recipe))
        else:
            ext = "png" if kind == "oversized" else "jpg"
            images.append(ImageEntry(f"{pid}/{i}", pid, label, f"{name}.{ext}", kind,
                                     "corrupt" if kind in ("truncated", "corrupt") else kind,
                                     f"{pid}/{i}@0", source=f"{pid}/0"))
    order = rng.permutation(len(images))
    # keep the first photo first (it is the listing thumbnail), shuffle the rest
    images = [images[0]] + [images[j] for j in order if j != 0]
    if o.kind == "jewelry":
        return _jewelry_product(o, label, n, pid, rng, images, born)
    carat = rng.uniform(0.3, 12.0)
    colour = _colour_name(label, rng)
    attrs = {
        "sku": pid, "price": f"{carat * rng.uniform(40, 900):.2f}", "colour": colour,
        "cut": stone["cut"], "carat": f"{carat:.2f}",
        "origin": str(rng.choice(GEM_CLASSES[label]["origins"])),
    }
    title = f"{carat:.2f} ct {colour} {stone['cut'].title()} {label.replace('-', ' ').title()}"
    return Product(pid, label, title, attrs, images, born)


def _colour_name(label: str, rng: np.random.Generator) -> str:
    mods = ("Light", "Medium", "Deep", "Vivid", "Pastel")
    base = {"diamond": "White", "onyx": "Black", "opal": "White", "moonstone": "Milky"}.get(
        label, label.split("-")[-1].title())
    return f"{rng.choice(mods)} {base}"


@dataclass(frozen=True)
class Piece:
    """What every photo of one generated jewelry product shows."""

    metal: str          # a key of jewelry.METALS
    gem: str | None     # the stone it is set with (None: a bracelet or a watch)


def piece_of(seed: int, label: str, n: int) -> Piece:
    rng = rng_for(seed, "piece", label, n)
    metal = jewelry.pick_metal(rng)
    gem = str(rng.choice(list(GEM_CLASSES)))
    return Piece(metal, gem if label in jewelry.SET_WITH_STONE else None)


def _photo_size(o: CatalogOptions, label: str, n: int, key: str) -> tuple[int, int]:
    """(width, height) of the first shot of a generated product photo."""
    if o.kind == "jewelry":
        return jewelry.photo_size(rng_for(o.seed, "photo", key, 0))
    plan = plan_gem(rng_for(o.seed, "photo", key, 0), label,
                    plan_stone(rng_for(o.seed, "stone", label, n), label))
    return plan.width, plan.height


def hue_word(h: float, s: float, v: float) -> str:
    """A colour word for an HSV colour (hue in degrees), as a store would write it."""
    if v < 0.2:
        return "black"
    if s < 0.15:
        return "white" if v > 0.7 else "grey"
    for top, word in ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (180, "teal"),
                      (260, "blue"), (290, "purple"), (335, "pink"), (361, "red")):
        if h % 360 < top:
            if word in ("red", "orange") and s < 0.45:
                return "pink"
            return "brown" if word == "orange" and v < 0.5 else word
    return "red"


def _jewelry_product(o: CatalogOptions, label: str, n: int, pid: str, rng: np.random.Generator,
                     images: list[ImageEntry], born: int) -> Product:
    """A jewelry product page: material and colour (the stone's, else the metal's), the
    stone where the piece has one, a title that says them (drawn from the piece, apart from
    the product's generator but for the price, so a gem store's draws are untouched)."""
    pc = piece_of(o.seed, label, n)
    material, metal_colour = MATERIALS[pc.metal]
    if pc.gem:
        g = GEM_CLASSES[pc.gem]
        colour = hue_word(g["h"], g["s"], g["v"])
    else:
        colour = metal_colour
    attrs = {"sku": pid, "price": f"{rng.uniform(60, 6000):.2f}", "material": material,
             "colour": colour}
    if pc.gem:
        attrs["stone"] = pc.gem.replace("-", " ")
    title = f"{material.title()} {label.title()}" + (
        f" with {pc.gem.replace('-', ' ').title()}" if pc.gem else "")
    return Product(pid, label, title, attrs, images, born)
