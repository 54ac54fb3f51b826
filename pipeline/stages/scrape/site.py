"""Site adapters are data: ``sites/<name>.yaml`` says where a store's pages and
images are, with extractors (pipeline/stages/scrape/extract.py: CSS in parsel syntax, XPath,
JMESPath on JSON, JSON-LD, meta tags), pagination, sitemaps and a label taxonomy.

A new store needs a YAML file, not code.

Example (sites/demo.yaml)::

    name: demo
    base_url: http://127.0.0.1:8000
    start_urls: ["/"]
    category_links: "nav.categories a.category::attr(href)"
    next_page: "nav.pagination a[rel=next]::attr(href)"
    product_links: ".product-grid a.product-link::attr(href)"
    product:
      id: "dd[itemprop=sku]::text"
      label: "nav.breadcrumb a.category::attr(href)"
      label_pattern: "/category/([^/?#]+)"
      images: ".gallery a.zoom::attr(href)"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.config import ConfigError, from_dict, read_yaml
from pipeline.core.manifest import text_problem
from pipeline.stages.scrape.extract import Spec, check_regex, check_spec


@dataclass(frozen=True)
class Rewrite:
    """A regex substitution applied to image URLs (e.g. thumbnail → full size)."""

    pattern: str
    replace: str

    def check(self) -> None:
        check_regex(self.pattern, "pattern")


@dataclass(frozen=True)
class ProductSelectors:
    """Where the product data is on a product page (HTML or JSON)."""

    images: Spec
    id: Spec | None = None
    id_pattern: str | None = None
    label: Spec | None = None
    label_pattern: str | None = None
    attributes: dict[str, Spec] = field(default_factory=dict)

    def check(self) -> None:
        for key in ("images", "id", "label"):
            check_spec(getattr(self, key), key)
        for key in ("id_pattern", "label_pattern"):
            if getattr(self, key):
                check_regex(getattr(self, key), key)
        for name, sel in self.attributes.items():
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,40}", name):
                raise ConfigError(f"attributes.{name}: a name is [a-z][a-z0-9_]* (it becomes the "
                                  f"manifest column attr_{name})")
            check_spec(sel, f"attributes.{name}")


@dataclass(frozen=True)
class Paginate:
    """Listings paged by number: the same URL with ``param`` = 2, 3, … until a page is empty."""

    param: str = field(default="page", metadata={"pattern": r"[A-Za-z0-9_.\-\[\]]{1,40}"})
    start: int = field(default=1, metadata={"min": 0})
    max_pages: int = field(default=1000, metadata={"min": 1, "max": 100_000})


@dataclass(frozen=True)
class SitemapSpec:
    """``sitemap.xml`` (and sitemap indexes): products with their ``lastmod``.

    ``lastmod`` lets a refresh skip a product that did not change, with its images;
    ``discover`` also crawls every product it lists (a store's most complete list).
    """

    url: tuple[str, ...] = ()            # default: robots.txt's Sitemap: lines, else /sitemap.xml
    products: str = r".*"                # regex a product's <loc> matches (others are ignored)
    product_url: str | None = None       # template: {} = the regex's first group (or the <loc>)
    discover: bool = True
    max_sitemaps: int = field(default=1000, metadata={"min": 1, "max": 100_000})

    def check(self) -> None:
        check_regex(self.products, "products")
        if self.product_url is not None and self.product_url.count("{}") != 1:
            raise ConfigError(f"product_url: {self.product_url!r} must hold {{}} exactly once")


@dataclass(frozen=True)
class LabelTarget:
    """A class of the project's taxonomy, optionally under a parent class."""

    label: str
    parent: str | None = None

    def check(self) -> None:
        for key in ("label", "parent"):
            value = getattr(self, key)
            why = text_problem(value) if value is not None else None
            if why:
                raise ConfigError(f"{key}: {value!r} {why}")


SCHEDULE = re.compile(r"@(hourly|daily|weekly|monthly|yearly)|none|"
                      r"([0-9*/,\-]+|[A-Za-z]{3}(-[A-Za-z]{3})?)(\s+([0-9*/,\-]+|[A-Za-z]{3}(-[A-Za-z]{3})?)){4}")


@dataclass(frozen=True)
class SiteConfig:
    """One store's adapter."""

    name: str = field(metadata={"pattern": r"[a-z0-9][a-z0-9_-]*"})
    base_url: str
    product: ProductSelectors
    start_urls: tuple[str, ...] = ("/",)
    category_links: Spec | None = None
    next_page: Spec | None = None
    product_links: Spec | None = None
    paginate: Paginate | None = None
    sitemap: SitemapSpec | None = None
    image_url_rewrite: tuple[Rewrite, ...] = ()
    label_map: dict[str, str | LabelTarget] = field(default_factory=dict)
    unmapped_labels: str = field(default="keep", metadata={"choices": {"keep", "exclude"}})
    allowed_hosts: tuple[str, ...] = ()
    schedule: str = "@weekly"

    def target(self, label: str) -> tuple[str, str | None, bool]:
        """``(class, parent, mapped)`` of a store label under ``label_map``."""
        t = self.label_map.get(label)
        if t is None:
            return label, None, False
        if isinstance(t, str):
            return t, None, True
        return t.label, t.parent, True

    def check(self) -> None:
        if not SCHEDULE.fullmatch(self.schedule.strip()):
            raise ConfigError(f"schedule: {self.schedule!r} is not a cron expression (5 fields) or one of "
                              "@hourly @daily @weekly @monthly @yearly none")
        if not re.match(r"^https?://[^/]+", self.base_url):
            raise ConfigError(f"base_url: {self.base_url!r} is not an http(s) URL")
        for key in ("category_links", "next_page", "product_links"):
            check_spec(getattr(self, key), key)
        if not self.start_urls and not (self.sitemap and self.sitemap.discover):
            raise ConfigError("start_urls: at least one start URL is needed (or a sitemap with "
                              "discover: true)")
        base = urlsplit(self.base_url)
        for i, u in enumerate(self.start_urls):
            p = urlsplit(u)
            if (p.scheme or p.netloc) and (p.scheme not in ("http", "https")
                                           or p.netloc.lower() != base.netloc.lower()):
                raise ConfigError(f"start_urls[{i}]: {u!r} is not on {base.netloc} (base_url); "
                                  "a crawl stays on its store's host: give paths such as /shop")
        for k, label in self.label_map.items():
            why = text_problem(label) if isinstance(label, str) else None
            if why:
                raise ConfigError(f"label_map.{k}: {label!r} {why}")
        for i, h in enumerate(self.allowed_hosts):
            if not re.fullmatch(r"[a-z0-9.-]+(:\d{1,5})?", h.lower()):
                raise ConfigError(f"allowed_hosts[{i}]: {h!r} is not a host name (host or host:port)")


def load_site(path: str | Path, base_url: str | None = None) -> SiteConfig:
    """Load and validate a site adapter; ``base_url`` overrides the file's.

    Raises:
        ConfigError: Naming the file and the offending key.
    """
    data = read_yaml(path)
    if base_url:
        data["base_url"] = base_url
    try:
        return from_dict(SiteConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
