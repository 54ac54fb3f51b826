"""How the storefront lays its catalog out: the demo store's own pages, or a real platform's.

One catalog (the same products, images and ground truth) can be served in four layouts,
with each platform's URL scheme, HTML and JSON shapes as its public documentation
describes them:

* ``demo``: ``/category/<label>?page=N``, ``/product/<id>``, ``/cdn/img/full/…``;
* ``shopify``: ``/collections/<handle>`` and ``/collections/<handle>/products.json?page=N&limit=L``
  (``products[].images[].src``, ``variants[].sku``, ``product_type``, ``tags``,
  ``updated_at``), ``/products/<handle>`` (JSON-LD, ``og:image``, a ``srcset`` of
  size-suffixed ``_200x`` variants) and ``/products/<handle>.json``; images under
  ``/cdn/shop/files/``, full size without a suffix; a sitemap index
  ``/sitemap.xml`` → ``/sitemap_products_1.xml`` …;
* ``woocommerce``: ``/product-category/<slug>/page/N/``, ``/product/<slug>/`` whose gallery
  keeps the full image in ``data-large_image`` and the largest ``srcset`` candidate
  (``src`` is a ``-600x600`` variant, later images lazy-load from ``data-src``);
  ``/wp-content/uploads/…``; WordPress's ``/wp-sitemap.xml`` index;
* ``magento``: ``/<category>.html?p=N``, ``/<product>.html`` whose gallery is JSON inside
  ``<script type="text/x-magento-init">`` (``mage/gallery/gallery`` → ``data[].full``);
  ``/media/catalog/product/…`` with resized copies under ``…/cache/<hash>/…``; ``/sitemap.xml``.

Every layout serves the same bytes for a full-size image, so the same seed gives the same
image ids whichever layout was scraped. Pages carry an ETag and Last-Modified that change
when a product or one of its images changes, and every sitemap gives each product's
``lastmod``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from pipeline.core.config import PLATFORMS
from pipeline.demo.catalog import BASE_DATE, Catalog, ImageEntry, Product

LAYOUTS = PLATFORMS  # the layouts are the platforms gemcurate has site templates for
SIZES = (100, 200, 300, 600)  # resized variants the platform pages link
SITEMAP_CHUNK = 250           # products per sitemap file where the platform splits them
#: XML namespaces (names, never fetched): sitemaps, Google's image sitemaps, schema.org
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
SCHEMA_ORG = "https://schema.org"
NS = f"xmlns='{SITEMAP_NS}' xmlns:image='http://www.google.com/schemas/sitemap-image/1.1'"


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def title_of(label: str) -> str:
    return label.replace("-", " ").title()


@dataclass(frozen=True)
class Page:
    """A page (HTML, JSON or XML) a layout answers with; ``tag`` joins its ETag."""

    body: str
    ctype: str
    modified: datetime
    tag: str = ""


@dataclass(frozen=True)
class ImageRef:
    """An image URL of the layout: the entry and the width asked for (``None``: full size)."""

    entry: ImageEntry
    width: int | None


class Layout:
    """URL scheme and page shapes of one layout over a catalog."""

    name = "demo"
    page_size = 12

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.full: dict[str, ImageEntry] = {}
        for p in catalog.products.values():
            for e in p.images:
                self.full[self.image_path(e)] = e
        self.by_handle = {self.handle(p): p for p in catalog.products.values()}

    # --------------------------------------------------------------- names
    @staticmethod
    def handle(p: Product) -> str:
        return p.product_id.lower()

    @staticmethod
    def file_name(e: ImageEntry) -> str:
        """A name unique in the store (folder catalogs repeat file names across products)."""
        pid = e.product_id.lower()
        return e.filename if e.filename.lower().startswith(pid) else f"{pid}-{e.filename}"

    def image_path(self, e: ImageEntry) -> str:
        """The decoded path of ``e``'s full-size image."""
        return e.url

    def image_url(self, e: ImageEntry, width: int | None = None) -> str:
        raise NotImplementedError

    def resolve(self, path: str) -> ImageRef | None:
        """The image a (decoded) request path names, full size or resized."""
        e = self.full.get(path)
        if e is not None:
            return ImageRef(e, None)
        got = self.resized(path)
        if got is None:
            return None
        e = self.full.get(got[0])
        return ImageRef(e, got[1]) if e is not None else None

    def resized(self, path: str) -> tuple[str, int] | None:
        """``(full-size path, width)`` of a resized copy's path (each platform names them its way)."""
        return None

    def product_url(self, p: Product) -> str:
        return f"/product/{p.product_id}"

    category_prefix: str | None = None  # a path that starts so is a listing (for /_stats)
    product_prefix: str | None = None

    def kind(self, path: str) -> str:
        """``image``, ``thumbnail``, ``category``, ``product``, ``sitemap`` or ``other``."""
        if self.category_prefix and path.startswith(self.category_prefix):
            return "category"
        if self.product_prefix and path.startswith(self.product_prefix):
            return "product"
        if path.startswith("/sitemap") or path.startswith("/wp-sitemap"):
            return "sitemap"
        ref = self.resolve(path)
        if ref is not None:
            return "image" if ref.width is None else "thumbnail"
        return "other"

    # --------------------------------------------------------------- routing
    def route(self, path: str, query: dict, base: str) -> Page | ImageRef | None:
        """What ``GET path`` answers (``None``: 404). ``base`` is scheme://host of the request."""
        ref = self.resolve(path)
        if ref is not None:
            return ref
        xml = self.sitemap(path, base)
        if xml is not None:
            return Page(xml, "application/xml", self.catalog_modified())
        return self.page(path, query, base)

    def sitemap(self, path: str, base: str) -> str | None:
        return None

    def page(self, path: str, query: dict, base: str) -> Page | None:
        return None

    def catalog_modified(self) -> datetime:
        return BASE_DATE + timedelta(days=7 * self.catalog.options.epoch)

    @staticmethod
    def page_number(query: dict, key: str = "page") -> int | None:
        try:
            n = int(query.get(key, "1"))
        except ValueError:
            return None
        return n if n >= 1 else None

    def listing(self, label: str, page: int, size: int) -> tuple[list[Product], int] | None:
        products = self.catalog.by_label.get(label)
        if products is None:
            return None
        pages = max(1, -(-len(products) // size))
        if not 1 <= page <= pages:
            return None
        return products[(page - 1) * size: page * size], pages

    def doc(self, title: str, body: str, head: str = "") -> str:
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)} | "
                f"Gem Emporium</title>{head}</head><body><header><a class='logo' href='/'>Gem "
                f"Emporium</a> <a href='/search?q='>Search</a> <a href='/account/login'>Sign in</a> "
                f"<a href='/cart'>Cart</a></header>{body}<footer>© Gem Emporium demo store"
                f"</footer></body></html>")

    def product_page(self, p: Product, body: str, base: str, head: str = "") -> Page:
        head = (f"<link rel='canonical' href='{esc(base + self.product_url(p))}'>"
                f"<meta property='og:type' content='product'>"
                f"<meta property='og:title' content='{esc(p.title)}'>"
                + (f"<meta property='og:image' content='{esc(base + self.image_url(p.images[0]))}'>"
                   if p.images else "") + head + self.jsonld(p, base))
        return Page(self.doc(p.title, body, head), "text/html; charset=utf-8", self.modified(p),
                    self.version_tag(p))

    def listing_page(self, title: str, body: str) -> Page:
        return Page(self.doc(title, body), "text/html; charset=utf-8", self.catalog_modified())

    # --------------------------------------------------------------- shared pieces
    def modified(self, p: Product) -> datetime:
        return self.catalog.product_modified(p)

    def version_tag(self, p: Product) -> str:
        """Changes whenever the product or one of its images does (part of its pages' ETags)."""
        return hashlib.sha1("|".join(e.etag for e in p.images).encode()).hexdigest()[:12]

    def jsonld(self, p: Product, base: str) -> str:
        doc = {"@context": f"{SCHEMA_ORG}/", "@type": "Product", "name": p.title,
               "sku": p.product_id, "category": title_of(p.label),
               "image": [base + self.image_url(e) for e in p.images],
               "brand": {"@type": "Brand", "name": "Gem Emporium"},
               "offers": {"@type": "Offer", "price": p.attrs.get("price", ""),
                          "priceCurrency": "USD", "availability": f"{SCHEMA_ORG}/InStock",
                          "url": base + self.product_url(p)}}
        if len(p.images) == 1 and p.product_id.endswith(("0", "5")):
            doc["image"] = doc["image"][0]  # schema.org allows a single URL as well as a list
        return ("<script type='application/ld+json'>"
                + json.dumps(doc).replace("</", "<\\/") + "</script>")

    def sitemap_urls(self, base: str, products: list[Product]) -> str:
        rows = []
        for p in products:
            imgs = "".join(f"<image:image><image:loc>{esc(base + self.image_url(e))}</image:loc>"
                           f"</image:image>" for e in p.images)
            rows.append(f"<url><loc>{esc(base + self.product_url(p))}</loc>"
                        f"<lastmod>{iso(self.modified(p))}</lastmod>{imgs}</url>")
        return f"<?xml version='1.0' encoding='UTF-8'?><urlset {NS}>{''.join(rows)}</urlset>"

    def sitemap_index(self, base: str, names: list[str], products: list[list[Product]]) -> str:
        rows = []
        for name, chunk in zip(names, products, strict=True):
            last = max((self.modified(p) for p in chunk), default=self.catalog.product_modified(
                next(iter(self.catalog.products.values()))))
            rows.append(f"<sitemap><loc>{esc(base + name)}</loc><lastmod>{iso(last)}</lastmod></sitemap>")
        return (f"<?xml version='1.0' encoding='UTF-8'?><sitemapindex "
                f"xmlns='{SITEMAP_NS}'>{''.join(rows)}</sitemapindex>")

    def products_sorted(self) -> list[Product]:
        return sorted(self.catalog.products.values(), key=lambda p: p.product_id)

    def chunks(self) -> list[list[Product]]:
        ps = self.products_sorted()
        return [ps[i:i + SITEMAP_CHUNK] for i in range(0, len(ps), SITEMAP_CHUNK)] or [[]]


class DemoLayout(Layout):
    """The demo store's own scheme (pages in server.py); adds its sitemap."""

    name = "demo"

    def image_url(self, e: ImageEntry, width: int | None = None) -> str:
        return e.url if width is None else e.thumb_url

    def resized(self, path: str) -> tuple[str, int] | None:
        if path.startswith("/cdn/img/w_200/"):
            return "/cdn/img/full/" + path[len("/cdn/img/w_200/"):], 200
        return None

    def sitemap(self, path: str, base: str) -> str | None:
        if path == "/sitemap.xml":
            return self.sitemap_urls(base, self.products_sorted())
        return None


SHOPIFY_IMG = re.compile(r"^/cdn/shop/files/(?P<stem>.+?)(?:_(?P<w>\d+)x)?(?P<ext>\.[A-Za-z0-9]+)$")
WOO_IMG = re.compile(r"^(?P<dir>/wp-content/uploads/\d{4}/\d{2}/)(?P<stem>.+?)"
                     r"(?:-(?P<w>\d+)x(?P<h>\d+))?(?P<ext>\.[A-Za-z0-9]+)$")
MAGENTO_IMG = re.compile(r"^/media/catalog/product/(?:cache/(?P<hash>[0-9a-f]{32})/)?"
                         r"(?P<rest>[^/]/[^/]/.+)$")


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    return (stem, "." + ext) if dot and stem else (name, "")


class ShopifyLayout(Layout):
    name = "shopify"

    def image_path(self, e: ImageEntry) -> str:
        return "/cdn/shop/files/" + self.file_name(e)

    def image_url(self, e: ImageEntry, width: int | None = None) -> str:
        stem, ext = _split_ext(self.file_name(e))
        return "/cdn/shop/files/" + quote(stem + (f"_{width}x" if width else "") + ext)

    category_prefix = "/collections/"
    product_prefix = "/products/"

    def resized(self, path: str) -> tuple[str, int] | None:
        m = SHOPIFY_IMG.match(path)
        return (f"/cdn/shop/files/{m['stem']}{m['ext']}", int(m["w"])) if m and m["w"] else None

    def product_url(self, p: Product) -> str:
        return f"/products/{self.handle(p)}"

    @staticmethod
    def numeric_id(text: str) -> int:
        return int(hashlib.sha1(text.encode()).hexdigest()[:10], 16)

    def product_json(self, p: Product, base: str) -> dict:
        updated = iso(self.modified(p))
        images = [{"id": self.numeric_id(e.key), "product_id": self.numeric_id(p.product_id),
                   "position": i + 1, "src": base + self.image_url(e), "alt": None,
                   "created_at": updated, "updated_at": iso(self.catalog.last_modified(e))}
                  for i, e in enumerate(p.images)]
        tags = [p.label] + [v for k, v in p.attrs.items() if k in ("cut", "origin")]
        return {"id": self.numeric_id(p.product_id), "title": p.title, "handle": self.handle(p),
                "body_html": f"<p>{esc(p.title)}</p>", "vendor": "Gem Emporium",
                "product_type": title_of(p.label), "tags": ", ".join(tags),
                "created_at": iso(self.catalog.product_modified(p)), "updated_at": updated,
                "published_at": updated,
                "variants": [{"id": self.numeric_id(p.product_id + "/v"), "title": "Default Title",
                              "sku": p.product_id, "price": p.attrs.get("price", ""),
                              "available": True}],
                "options": [{"name": "Title", "position": 1, "values": ["Default Title"]}],
                "images": images, "image": images[0] if images else None}

    def page(self, path: str, query: dict, base: str) -> Page | None:
        if path == "/":
            links = "".join(f"<li><a class='collection-link' href='/collections/{c}'>{esc(title_of(c))}"
                            f"</a></li>" for c in self.catalog.categories)
            return self.listing_page("Home", f"<h1>Natural gemstones</h1><nav class='site-nav'>"
                                             f"<ul class='collections'>{links}</ul></nav>")
        m = re.fullmatch(r"/collections/([^/]+)/products\.json", path)
        if m:
            n = self.page_number(query)
            try:
                limit = min(250, max(1, int(query.get("limit", "30"))))
            except ValueError:
                limit = 30
            products = self.catalog.by_label.get(m[1])
            if products is None or n is None:
                return None
            chunk = products[(n - 1) * limit: n * limit]  # past the end: an empty list
            body = json.dumps({"products": [self.product_json(p, base) for p in chunk]})
            return Page(body, "application/json", self.catalog_modified())
        m = re.fullmatch(r"/collections/([^/]+)", path)
        if m:
            n = self.page_number(query)
            got = self.listing(m[1], n or 0, self.page_size)
            if got is None:
                return None
            products, pages = got
            cards = "".join(
                f"<li class='grid__item'><div class='card-wrapper product-card-wrapper'>"
                f"<a class='full-unstyled-link' href='/collections/{m[1]}/products/{self.handle(p)}'>"
                f"<img src='{self.image_url(p.images[0], 200)}' loading='lazy' alt='{esc(p.title)}'>"
                f"{esc(p.title)}</a></div></li>" for p in products)
            nav = (f"<a class='pagination__item--next' rel='next' href='/collections/{m[1]}?page="
                   f"{n + 1}'>Next</a>" if n < pages else "")
            return self.listing_page(title_of(m[1]), f"<h1 class='collection-hero__title'>"
                                     f"{esc(title_of(m[1]))}</h1><ul id='product-grid' "
                                     f"class='grid product-grid'>{cards}</ul>"
                                     f"<nav class='pagination'>{nav}</nav>")
        m = re.fullmatch(r"(?:/collections/[^/]+)?/products/([^/]+?)(\.json)?", path)
        if m:
            p = self.by_handle.get(m[1])
            if p is None:
                return None
            if m[2]:
                return Page(json.dumps({"product": self.product_json(p, base)}), "application/json",
                            self.modified(p), self.version_tag(p))
            media = "".join(
                f"<li class='product__media-item'><img class='product__media' "
                f"src='{self.image_url(e, 600)}' srcset='" + ", ".join(
                    f"{self.image_url(e, w)} {w}w" for w in SIZES) + "' sizes='(min-width: 990px) 50vw'"
                f" loading='{'eager' if i == 0 else 'lazy'}' alt='{esc(p.title)}'></li>"
                for i, e in enumerate(p.images))
            body = (f"<nav class='breadcrumbs'><a href='/'>Home</a> / <a href='/collections/{p.label}'>"
                    f"{esc(title_of(p.label))}</a></nav><section class='product'>"
                    f"<h1 class='product__title'>{esc(p.title)}</h1>"
                    f"<ul class='product__media-list'>{media}</ul>"
                    f"<div class='price'>${esc(p.attrs.get('price', ''))}</div>"
                    f"<form action='/cart/add' method='post'><input type='hidden' name='id' "
                    f"value='{self.numeric_id(p.product_id + '/v')}'></form></section>")
            return self.product_page(p, body, base)
        return None

    def sitemap(self, path: str, base: str) -> str | None:
        chunks = self.chunks()
        names = [f"/sitemap_products_{i + 1}.xml" for i in range(len(chunks))]
        if path == "/sitemap.xml":
            return self.sitemap_index(base, names, chunks)
        if path in names:
            return self.sitemap_urls(base, chunks[names.index(path)])
        return None


class WooLayout(Layout):
    name = "woocommerce"

    def _dir(self, e: ImageEntry) -> str:
        # uploaded when the product was listed; a re-shot image keeps its URL (as in the truth)
        when = BASE_DATE + timedelta(days=7 * self.catalog.products[e.product_id].born)
        return f"/wp-content/uploads/{when.year:04d}/{when.month:02d}/"

    def image_path(self, e: ImageEntry) -> str:
        return self._dir(e) + self.file_name(e)

    def image_url(self, e: ImageEntry, width: int | None = None) -> str:
        stem, ext = _split_ext(self.file_name(e))
        return self._dir(e) + quote(stem + (f"-{width}x{width}" if width else "") + ext)

    category_prefix = "/product-category/"
    product_prefix = "/product/"

    def resized(self, path: str) -> tuple[str, int] | None:
        m = WOO_IMG.match(path)
        return (f"{m['dir']}{m['stem']}{m['ext']}", int(m["w"])) if m and m["w"] else None

    def product_url(self, p: Product) -> str:
        return f"/product/{self.handle(p)}/"

    # long: the demo layout's HTML, one short branch per page kind, read side by side
    def page(self, path: str, query: dict, base: str) -> Page | None:
        if path == "/":
            links = "".join(f"<li class='cat-item'><a href='/product-category/{c}/'>{esc(title_of(c))}"
                            f"</a></li>" for c in self.catalog.categories)
            return self.listing_page("Shop", f"<h1>Natural gemstones</h1><aside class='widget "
                                             f"woocommerce widget_product_categories'><ul "
                                             f"class='product-categories'>{links}</ul></aside>")
        m = re.fullmatch(r"/product-category/([^/]+)/(?:page/(\d+)/)?", path)
        if m:
            n = int(m[2]) if m[2] else 1
            got = self.listing(m[1], n, self.page_size)
            if got is None:
                return None
            products, pages = got
            cards = "".join(
                f"<li class='product type-product status-publish instock'><a href='{self.product_url(p)}' "
                f"class='woocommerce-LoopProduct-link woocommerce-loop-product__link'><img width='300' "
                f"height='300' src='data:image/gif;base64,R0lGODlhAQABAAAAACw=' data-src='"
                f"{self.image_url(p.images[0], 300)}' class='lazyload attachment-woocommerce_thumbnail'>"
                f"<h2 class='woocommerce-loop-product__title'>{esc(p.title)}</h2></a></li>"
                for p in products)
            nav = (f"<li><a class='next page-numbers' href='/product-category/{m[1]}/page/{n + 1}/'>"
                   f"→</a></li>" if n < pages else "")
            return self.listing_page(title_of(m[1]), f"<h1 class='woocommerce-products-header__title "
                                     f"page-title'>{esc(title_of(m[1]))}</h1><ul class='products "
                                     f"columns-4'>{cards}</ul><nav class='woocommerce-pagination'>"
                                     f"<ul class='page-numbers'>{nav}</ul></nav>")
        m = re.fullmatch(r"/product/([^/]+)/", path)
        if m:
            p = self.by_handle.get(m[1])
            if p is None:
                return None
            slides = []
            for i, e in enumerate(p.images):
                full = self.image_url(e)
                srcset = ", ".join(f"{self.image_url(e, w)} {w}w" for w in (100, 300, 600))
                src = f"src='{self.image_url(e, 600)}'" if i == 0 else \
                    f"src='data:image/gif;base64,R0lGODlhAQABAAAAACw=' data-src='{self.image_url(e, 600)}'"
                slides.append(
                    f"<div data-thumb='{self.image_url(e, 100)}' class='woocommerce-product-gallery__image'>"
                    f"<a href='{full}'><img width='600' height='600' {src} class='wp-post-image' "
                    f"alt='{esc(p.title)}' data-caption='' data-large_image='{full}' "
                    f"data-large_image_width='1200' data-large_image_height='1200' "
                    f"srcset='{srcset}' sizes='(max-width: 600px) 100vw, 600px'></a></div>")
            attrs = "".join(
                f"<tr class='woocommerce-product-attributes-item woocommerce-product-attributes-item--"
                f"attribute_pa_{k}'><th class='woocommerce-product-attributes-item__label'>{esc(k.title())}"
                f"</th><td class='woocommerce-product-attributes-item__value'><p>{esc(v)}</p></td></tr>"
                for k, v in p.attrs.items() if k not in ("price", "sku"))
            body = (f"<nav class='woocommerce-breadcrumb'><a href='/'>Home</a> / <a href='/product-"
                    f"category/{p.label}/'>{esc(title_of(p.label))}</a> / {esc(p.title)}</nav>"
                    f"<div id='product-{ShopifyLayout.numeric_id(p.product_id)}' class='product type-"
                    f"product'><div class='woocommerce-product-gallery woocommerce-product-gallery--"
                    f"with-images images'><div class='woocommerce-product-gallery__wrapper'>"
                    f"{''.join(slides)}</div></div><div class='summary entry-summary'><h1 class="
                    f"'product_title entry-title'>{esc(p.title)}</h1><p class='price'><span class="
                    f"'woocommerce-Price-amount amount'>${esc(p.attrs.get('price', ''))}</span></p>"
                    f"<div class='product_meta'><span class='sku_wrapper'>SKU: <span class='sku'>"
                    f"{esc(p.product_id)}</span></span> <span class='posted_in'>Category: <a href='"
                    f"/product-category/{p.label}/' rel='tag'>{esc(title_of(p.label))}</a></span></div>"
                    f"</div><table class='woocommerce-product-attributes shop_attributes'>{attrs}</table>"
                    f"</div>")
            return self.product_page(p, body, base)
        return None

    def sitemap(self, path: str, base: str) -> str | None:
        chunks = self.chunks()
        names = [f"/wp-sitemap-posts-product-{i + 1}.xml" for i in range(len(chunks))]
        if path == "/wp-sitemap.xml":
            return self.sitemap_index(base, names, chunks)
        if path in names:
            return self.sitemap_urls(base, chunks[names.index(path)])
        return None


class MagentoLayout(Layout):
    name = "magento"

    def _rel(self, e: ImageEntry) -> str:
        name = self.file_name(e)
        a = (name[:1] or "_").lower()
        b = (name[1:2] or "_").lower()
        return f"{a}/{b}/{name}"

    def image_path(self, e: ImageEntry) -> str:
        return "/media/catalog/product/" + self._rel(e)

    @staticmethod
    def cache_hash(width: int) -> str:
        return hashlib.md5(f"image-{width}".encode()).hexdigest()  # a cache name, not security

    def image_url(self, e: ImageEntry, width: int | None = None) -> str:
        rel = quote(self._rel(e))
        if width is None:
            return "/media/catalog/product/" + rel
        return f"/media/catalog/product/cache/{self.cache_hash(width)}/{rel}"

    def resized(self, path: str) -> tuple[str, int] | None:
        m = MAGENTO_IMG.match(path)
        w = {self.cache_hash(w): w for w in SIZES}.get(m["hash"]) if m and m["hash"] else None
        return ("/media/catalog/product/" + m["rest"], w) if w else None

    def product_url(self, p: Product) -> str:
        return f"/{self.handle(p)}.html"

    def category_url(self, label: str) -> str:
        return f"/{label}.html"

    def kind(self, path: str) -> str:
        if path.endswith(".html"):
            slug = path[1:-5]
            if slug in self.catalog.by_label:
                return "category"
            if slug in self.by_handle:
                return "product"
        return super().kind(path)

    def gallery_json(self, p: Product, base: str) -> str:
        data = [{"thumb": base + self.image_url(e, 100), "img": base + self.image_url(e, 600),
                 "full": base + self.image_url(e), "caption": f"{p.title} view {i + 1}",
                 "position": str(i + 1), "isMain": i == 0, "type": "image", "videoUrl": None}
                for i, e in enumerate(p.images)]
        doc = {"[data-gallery-role=gallery-placeholder]": {"mage/gallery/gallery": {
            "mixins": ["magnifier/magnify"], "magnifierOpts": {"fullscreenzoom": "20"},
            "data": data, "options": {"nav": "thumbs", "loop": True, "allowfullscreen": True}}}}
        return json.dumps(doc).replace("</", "<\\/")

    def page(self, path: str, query: dict, base: str) -> Page | None:
        if path == "/":
            links = "".join(f"<li class='level0 category-item'><a href='{self.category_url(c)}' "
                            f"class='level-top'><span>{esc(title_of(c))}</span></a></li>"
                            for c in self.catalog.categories)
            return self.listing_page("Home", f"<nav class='navigation' data-action='navigation'><ul "
                                             f"data-mage-init='{{\"menu\":{{}}}}'>{links}</ul></nav>")
        if not path.endswith(".html"):
            return None
        slug = path[1:-5]
        if slug in self.catalog.by_label:
            n = self.page_number(query, "p")
            got = self.listing(slug, n or 0, self.page_size)
            if got is None:
                return None
            products, pages = got
            items = "".join(
                f"<li class='item product product-item'><div class='product-item-info'><a href='"
                f"{self.product_url(p)}' class='product photo product-item-photo'><img class='product-"
                f"image-photo' src='{self.image_url(p.images[0], 300)}' loading='lazy'></a><strong "
                f"class='product name product-item-name'><a class='product-item-link' href='"
                f"{self.product_url(p)}'>{esc(p.title)}</a></strong></div></li>" for p in products)
            nav = (f"<li class='item pages-item-next'><a class='action next' href='"
                   f"{self.category_url(slug)}?p={n + 1}' title='Next'><span>Next</span></a></li>"
                   if n < pages else "")
            return self.listing_page(title_of(slug), f"<h1 class='page-title'><span class='base'>"
                                     f"{esc(title_of(slug))}</span></h1><div class='products "
                                     f"wrapper grid products-grid'><ol class='products list items "
                                     f"product-items'>{items}</ol></div><div class='pages'><ul "
                                     f"class='items pages-items'>{nav}</ul></div>")
        p = self.by_handle.get(slug)
        if p is None:
            return None
        attrs = "".join(f"<tr><th class='col label' scope='row'>{esc(k.title())}</th><td class='col "
                        f"data' data-th='{esc(k.title())}'>{esc(v)}</td></tr>"
                        for k, v in p.attrs.items() if k not in ("price", "sku"))
        body = (f"<div class='breadcrumbs'><ul class='items'><li class='item home'><a href='/'>Home"
                f"</a></li><li class='item category'><a href='{self.category_url(p.label)}'>"
                f"{esc(title_of(p.label))}</a></li><li class='item product'><strong>{esc(p.title)}"
                f"</strong></li></ul></div><div class='product-info-main'><h1 class='page-title'>"
                f"<span class='base' data-ui-id='page-title-wrapper' itemprop='name'>{esc(p.title)}"
                f"</span></h1><div class='price-box'><span class='price'>${esc(p.attrs.get('price', ''))}"
                f"</span></div><div class='product attribute sku'><strong class='type'>SKU</strong>"
                f"<div class='value' itemprop='sku'>{esc(p.product_id)}</div></div></div>"
                f"<div class='product media'><div class='gallery-placeholder' data-gallery-role="
                f"'gallery-placeholder'><img alt='main product photo' class='gallery-placeholder__image' "
                f"src='{self.image_url(p.images[0], 600)}'></div><script type='text/x-magento-init'>"
                f"{self.gallery_json(p, base)}</script></div><div class='additional-attributes-wrapper "
                f"table-wrapper'><table class='data table additional-attributes' id='product-attribute-"
                f"specs-table'><tbody>{attrs}</tbody></table></div>")
        return self.product_page(p, body, base)

    def sitemap(self, path: str, base: str) -> str | None:
        if path == "/sitemap.xml":
            return self.sitemap_urls(base, self.products_sorted())
        return None


def make_layout(name: str, catalog: Catalog, page_size: int = 12) -> Layout:
    """The :class:`Layout` called ``name`` over ``catalog``."""
    classes = {"demo": DemoLayout, "shopify": ShopifyLayout, "woocommerce": WooLayout,
               "magento": MagentoLayout}
    if name not in classes:
        raise ValueError(f"--layout {name!r}: expected one of {', '.join(LAYOUTS)}")
    layout = classes[name](catalog)
    layout.page_size = page_size
    return layout


def ground_truth(catalog: Catalog, layout: str = "demo") -> dict:
    """The ground truth: every image with label, junk type, duplicate group and box.

    ``layout`` names the URLs (the storefront's ``--layout``); everything else is the
    same in every layout.
    """
    lay = make_layout(layout, catalog)
    images = []
    for p in catalog.products.values():
        for e in p.images:
            images.append({
                "url": lay.image_url(e), "label": e.label, "product_id": e.product_id,
                "junk": e.junk, "dup_group": e.dup_group, "bbox": catalog.bbox(e),
                "kind": e.kind, "version": e.version, "format": e.fmt,
                "etag": e.etag, "recipe": e.recipe,
            })
    o = catalog.options
    return {
        "seed": o.seed, "epoch": o.epoch, "catalog": o.catalog, "layout": layout,
        "classes": catalog.categories,
        "products": [{"product_id": p.product_id, "label": p.label, "born": p.born,
                      "url": lay.product_url(p), "n_images": len(p.images)}
                     for p in catalog.products.values()],
        "images": images,
    }
