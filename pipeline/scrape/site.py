"""Site adapters are data: ``sites/<name>.yaml`` says where a store's pages and
images are, with CSS selectors (parsel syntax, ``::text`` and ``::attr(x)``).

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

from parsel import Selector
from parsel.csstranslator import HTMLTranslator

from pipeline.config import ConfigError, from_dict, read_yaml
from pipeline.manifest import text_problem

_CSS = HTMLTranslator()


def _check_css(expr: str, key: str) -> None:
    try:
        _CSS.css_to_xpath(expr)
    except Exception as exc:  # cssselect raises several error types
        raise ConfigError(f"{key}: invalid CSS selector {expr!r}: {exc}") from None


def _check_regex(expr: str, key: str) -> None:
    try:
        re.compile(expr)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression {expr!r}: {exc}") from None


@dataclass(frozen=True)
class Rewrite:
    """A regex substitution applied to image URLs (e.g. thumbnail → full size)."""

    pattern: str
    replace: str

    def validate(self) -> None:
        _check_regex(self.pattern, "pattern")


@dataclass(frozen=True)
class ProductSelectors:
    """Where the product data is on a product page."""

    images: str
    id: str | None = None
    id_pattern: str | None = None
    label: str | None = None
    label_pattern: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        for key in ("images", "id", "label"):
            if getattr(self, key):
                _check_css(getattr(self, key), key)
        for key in ("id_pattern", "label_pattern"):
            if getattr(self, key):
                _check_regex(getattr(self, key), key)
        for name, sel in self.attributes.items():
            _check_css(sel, f"attributes.{name}")


SCHEDULE = re.compile(r"@(hourly|daily|weekly|monthly|yearly)|none|"
                      r"([0-9*/,\-]+|[A-Za-z]{3}(-[A-Za-z]{3})?)(\s+([0-9*/,\-]+|[A-Za-z]{3}(-[A-Za-z]{3})?)){4}")


@dataclass(frozen=True)
class SiteConfig:
    """One store's adapter."""

    name: str = field(metadata={"pattern": r"[a-z0-9][a-z0-9_-]*"})
    base_url: str
    product: ProductSelectors
    start_urls: tuple[str, ...] = ("/",)
    category_links: str | None = None
    next_page: str | None = None
    product_links: str | None = None
    image_url_rewrite: tuple[Rewrite, ...] = ()
    label_map: dict[str, str] = field(default_factory=dict)
    allowed_hosts: tuple[str, ...] = ()
    schedule: str = "@weekly"

    def validate(self) -> None:
        if not SCHEDULE.fullmatch(self.schedule.strip()):
            raise ConfigError(f"schedule: {self.schedule!r} is not a cron expression (5 fields) or one of "
                              "@hourly @daily @weekly @monthly @yearly none")
        if not re.match(r"^https?://[^/]+", self.base_url):
            raise ConfigError(f"base_url: {self.base_url!r} is not an http(s) URL")
        for key in ("category_links", "next_page", "product_links"):
            if getattr(self, key):
                _check_css(getattr(self, key), key)
        if not self.start_urls:
            raise ConfigError("start_urls: at least one start URL is needed")
        base = urlsplit(self.base_url)
        for i, u in enumerate(self.start_urls):
            p = urlsplit(u)
            if (p.scheme or p.netloc) and (p.scheme not in ("http", "https")
                                           or p.netloc.lower() != base.netloc.lower()):
                raise ConfigError(f"start_urls[{i}]: {u!r} is not on {base.netloc} (base_url); "
                                  "a crawl stays on its store's host: give paths such as /shop")
        for k, label in self.label_map.items():
            why = text_problem(label)
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


def select(sel: Selector, expr: str | None) -> list[str]:
    """All matches of ``expr``, stripped, empties dropped."""
    if not expr:
        return []
    return [v.strip() for v in sel.css(expr).getall() if v and v.strip()]


def first(sel: Selector, expr: str | None, pattern: str | None = None) -> str | None:
    """The first match of ``expr``, optionally reduced to ``pattern``'s first group."""
    for value in select(sel, expr):
        if pattern:
            m = re.search(pattern, value)
            if not m:
                continue
            value = m.group(1) if m.groups() else m.group(0)
        return value
    return None
