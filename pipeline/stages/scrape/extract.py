"""Extractors: where a value is in a page, as data (the values of a site adapter's keys).

A key of ``sites/<name>.yaml`` that finds something (``product_links``, ``product.images``,
…) takes one of:

* a string: a CSS selector in parsel's syntax (``a.product::attr(href)``, ``h1::text``);
* a mapping with one source and optional transforms::

      {css: "img.zoom::attr(srcset)", srcset: true}          # the largest srcset candidate
      {xpath: "//dd[@itemprop='sku']/text()"}
      {json: "products[].handle", template: "/products/{}.json"}   # JMESPath, response is JSON
      {script: "script[type='text/x-magento-init']",                # JSON inside <script> tags
       json: "*.\\"mage/gallery/gallery\\".data[].full"}
      {jsonld: "image"}               # JMESPath over each schema.org Product in ld+json scripts
      {meta: "og:image"}              # <meta property|name=… content=…>

  Transforms, applied in this order to every value found: ``srcset`` (take the largest
  candidate), ``strip`` (a regex removed, e.g. a size suffix ``_\\d+x(?=\\.)``),
  ``pattern`` (keep the first group), ``slug`` (lower-case, ``-`` between words),
  ``template`` (``{}`` replaced by the value);
* a list of those: the first that finds anything (fallbacks, e.g. the gallery, then
  JSON-LD, then ``og:image``).

Pages are untrusted: malformed JSON, a JMESPath query that matches nothing, or a script
tag that is not JSON each find nothing (and are logged), never raise.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote

import jmespath
import jmespath.exceptions
from lxml import etree
from parsel import Selector
from parsel.csstranslator import HTMLTranslator

from pipeline.core.config import ConfigError

logger = logging.getLogger(__name__)

_CSS = HTMLTranslator()
SOURCES = ("css", "xpath", "json", "jsonld", "meta")
MAX_VALUES = 10_000      # per extractor and page: a hostile page cannot flood the frontier
MAX_JSON_BYTES = 20_000_000


def check_css(expr: str, key: str) -> None:
    try:
        _CSS.css_to_xpath(expr)
    except Exception as exc:  # cssselect raises several error types
        raise ConfigError(f"{key}: invalid CSS selector {expr!r}: {exc}") from None


def check_regex(expr: str, key: str) -> None:
    try:
        re.compile(expr)
    except re.error as exc:
        raise ConfigError(f"{key}: invalid regular expression {expr!r}: {exc}") from None


def check_xpath(expr: str, key: str) -> None:
    try:
        etree.XPath(expr)
    except etree.XPathError as exc:
        raise ConfigError(f"{key}: invalid XPath {expr!r}: {exc}") from None


def check_jmespath(expr: str, key: str) -> None:
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise ConfigError(f"{key}: invalid JMESPath {expr!r}: {' '.join(str(exc).split())}") from None


@dataclass(frozen=True)
class Extractor:
    """One source (``css``, ``xpath``, ``json``, ``jsonld`` or ``meta``) and its transforms."""

    css: str | None = None
    xpath: str | None = None
    json: str | None = None
    script: str | None = None
    jsonld: str | None = None
    meta: str | None = None
    srcset: bool = False
    strip: str | None = None
    pattern: str | None = None
    slug: bool = False
    template: str | None = None

    def check(self) -> None:
        given = [k for k in SOURCES if getattr(self, k)]
        if len(given) != 1:
            raise ConfigError(f"{'/'.join(given) or 'source'}: give exactly one of "
                              f"{', '.join(SOURCES)} (got {len(given)})")
        if self.css:
            check_css(self.css, "css")
        if self.xpath:
            check_xpath(self.xpath, "xpath")
        if self.json:
            check_jmespath(self.json, "json")
        if self.jsonld:
            check_jmespath(self.jsonld, "jsonld")
        if self.script:
            if not self.json:
                raise ConfigError("script: only with json (the JMESPath applied to the script's JSON)")
            check_css(self.script, "script")
        for key in ("strip", "pattern"):
            if getattr(self, key):
                check_regex(getattr(self, key), key)
        if self.template is not None and self.template.count("{}") != 1:
            raise ConfigError(f"template: {self.template!r} must hold {{}} exactly once")


Spec = str | Extractor | tuple[str | Extractor, ...]


def as_list(spec: Spec | None) -> list[Extractor]:
    if spec is None:
        return []
    if isinstance(spec, str):
        return [Extractor(css=spec)]
    if isinstance(spec, Extractor):
        return [spec]
    return [e for s in spec for e in as_list(s)]


def check_spec(spec: Spec | None, key: str) -> None:
    """Validate a key's value (strings are CSS; mappings were validated when built)."""
    if isinstance(spec, str):
        check_css(spec, key)
    elif isinstance(spec, tuple):
        if not spec:
            raise ConfigError(f"{key}: an empty list finds nothing")
        for i, s in enumerate(spec):
            check_spec(s, f"{key}[{i}]")


class Doc:
    """A fetched page, parsed lazily as HTML, JSON and JSON-LD."""

    def __init__(self, body: bytes | str, content_type: str | None = None, url: str = "") -> None:
        self.text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        self.content_type = (content_type or "").lower()
        self.url = url

    @cached_property
    def sel(self) -> Selector:
        return Selector(text=self.text or "<html></html>")

    @cached_property
    def data(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON."""
        head = self.text.lstrip()[:1]
        if "json" not in self.content_type and head not in ("{", "["):
            return None
        return _loads(self.text, f"the JSON of {self.url}")

    def scripts(self, css: str) -> list[Any]:
        out = []
        for i, text in enumerate(self.sel.css(css).xpath("string()").getall()):
            value = _loads(text, f"script {css!r} #{i + 1} of {self.url}")
            if value is not None:
                out.append(value)
        return out

    @cached_property
    def products_ld(self) -> list[dict]:
        """Every schema.org ``Product`` in the page's ``application/ld+json`` scripts."""
        found: list[dict] = []

        def walk(node: Any, depth: int = 0) -> None:
            if depth > 6 or len(found) > 100:
                return
            if isinstance(node, list):
                for n in node:
                    walk(n, depth + 1)
            elif isinstance(node, dict):
                kind = node.get("@type")
                kinds = kind if isinstance(kind, list) else [kind]
                if "Product" in kinds or "ProductGroup" in kinds:
                    found.append(node)
                for key in ("@graph", "mainEntity", "itemListElement", "item"):
                    if key in node:
                        walk(node[key], depth + 1)

        for doc in self.scripts("script[type='application/ld+json']"):
            walk(doc)
        return found


def _loads(text: str, what: str) -> Any:
    if len(text) > MAX_JSON_BYTES:
        logger.warning("%s: over %d bytes, ignored", what, MAX_JSON_BYTES)
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        logger.warning("%s is not valid JSON (%s); nothing extracted from it", what,
                       str(exc)[:120])
        return None


def _flatten(value: Any, out: list[str], depth: int = 0) -> None:
    if value is None or depth > 8 or len(out) >= MAX_VALUES:
        return
    if isinstance(value, list):
        for v in value:
            _flatten(v, out, depth + 1)
    elif isinstance(value, dict):
        # schema.org ImageObject and friends: the URL is a property
        for key in ("url", "contentUrl", "src", "@id"):
            if isinstance(value.get(key), str):
                out.append(value[key])
                return
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, int | float | str):
        out.append(str(value))


def largest_srcset(value: str) -> str | None:
    """The candidate of a ``srcset`` with the largest width (``w``) or density (``x``)."""
    best, best_size = None, -1.0
    for part in re.split(r",\s+(?=\S)", value.strip()):
        bits = part.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1:
            m = re.fullmatch(r"(\d+(?:\.\d+)?)([wx])", bits[-1])
            if m:
                size = float(m[1]) * (1 if m[2] == "w" else 1e6)  # a density ranks above widths
        if size > best_size:
            best, best_size = bits[0].rstrip(","), size
    return best


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _raw(doc: Doc, ex: Extractor) -> list[str]:
    out: list[str] = []
    if ex.css:
        vals = doc.sel.css(ex.css).getall()
        out = vals[:MAX_VALUES]
    elif ex.xpath:
        try:
            vals = doc.sel.xpath(ex.xpath).getall()
        except ValueError as exc:
            logger.warning("xpath %r failed on %s: %s", ex.xpath, doc.url, exc)
            vals = []
        out = [v if isinstance(v, str) else str(v) for v in vals[:MAX_VALUES]]
    elif ex.json:
        roots = doc.scripts(ex.script) if ex.script else [doc.data]
        for root in roots:
            if root is None:
                continue
            try:
                _flatten(jmespath.search(ex.json, root), out)
            except jmespath.exceptions.JMESPathError as exc:  # a type error on odd data
                logger.warning("json %r failed on %s: %s", ex.json, doc.url, exc)
    elif ex.jsonld:
        for product in doc.products_ld:
            try:
                _flatten(jmespath.search(ex.jsonld, product), out)
            except jmespath.exceptions.JMESPathError as exc:
                logger.warning("jsonld %r failed on %s: %s", ex.jsonld, doc.url, exc)
    elif ex.meta:
        out = doc.sel.xpath("//meta[@property=$n or @name=$n]/@content", n=ex.meta).getall()
    return out


def extract(doc: Doc, spec: Spec | None) -> list[str]:
    """Every value ``spec`` finds in ``doc``, transformed, stripped, empties dropped."""
    for ex in as_list(spec):
        values = []
        for v in _raw(doc, ex):
            v = v.strip()
            if ex.srcset:
                v = largest_srcset(v) or ""
            if ex.strip and v:
                v = re.sub(ex.strip, "", v)
            if ex.pattern and v:
                m = re.search(ex.pattern, v)
                if not m:
                    continue
                v = m.group(1) if m.groups() else m.group(0)
            if ex.slug:
                v = slugify(v)
            if ex.template is not None and v:
                v = ex.template.replace("{}", quote(v, safe="/:?&=%#+~@!$,;"))
            v = v.strip()
            if v:
                values.append(v)
        if values:
            return values
    return []


def extract_first(doc: Doc, spec: Spec | None, pattern: str | None = None) -> str | None:
    """The first value, optionally reduced to ``pattern``'s first group."""
    for value in extract(doc, spec):
        if pattern:
            m = re.search(pattern, value)
            if not m:
                continue
            value = m.group(1) if m.groups() else m.group(0)
        return value
    return None
