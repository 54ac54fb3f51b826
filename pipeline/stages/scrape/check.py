"""``gemcurate site check``: a polite dry run of a site adapter against its store.

It reads robots.txt, the first start URL, one listing, one product and its first image
(and the first sitemap when the adapter has one), at the rate the store allows, with the
crawler's own scope and redirect rules, and prints what every key of the YAML found. It
writes nothing but a throwaway state database in a temporary folder. The tool a data
engineer runs while writing ``sites/<name>.yaml``.

Example:
    $ gemcurate site check sites/shop.yaml --base-url http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import aiohttp

from pipeline.core.blobstore import open_store
from pipeline.core.config import ScrapeParams
from pipeline.core.text import printable
from pipeline.stages.scrape.crawler import Crawler, normalize
from pipeline.stages.scrape.downloads import check_image
from pipeline.stages.scrape.extract import Doc, extract
from pipeline.stages.scrape.site import SiteConfig
from pipeline.stages.scrape.state import CrawlState, connect


@dataclass
class Finding:
    key: str
    values: list[str]
    required: bool = False
    note: str = ""


@dataclass
class Report:
    """What a check found: one section per page it read."""

    sections: list[tuple[str, str, list[Finding]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, show: int = 3) -> str:
        lines = []
        for title, url, findings in self.sections:
            lines.append(f"{title}: {url}")
            for f in findings:
                if f.values:
                    shown = ", ".join(v if len(v) <= 100 else v[:97] + "..." for v in f.values[:show])
                    more = f" (+{len(f.values) - show} more)" if len(f.values) > show else ""
                    lines.append(f"  {f.key:<22} {len(f.values):>4} found: {shown}{more}")
                else:
                    lines.append(f"  {f.key:<22}    - {'NOTHING FOUND' if f.required else 'nothing'}"
                                 + (f" ({f.note})" if f.note else ""))
                if f.values and f.note:
                    lines.append(f"  {'':<22}        {f.note}")
        lines.append(f"requests sent: {self.requests}")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        lines.append("OK: every key needed to crawl found something" if self.ok else
                     "check the keys marked PROBLEM (see README: Writing a site adapter)")
        # every value came from the store's pages: no control character reaches the terminal
        return "\n".join(printable(line) for line in lines)


async def _get(cr: Crawler, url: str, kind: str):
    robots, limiter, _ = await cr.host(url)
    if not robots.allowed(url, cr.p.user_agent):
        return None, "robots.txt disallows it"
    res = await cr._fetch(url, limiter, {}, kind)
    if res.status != 200 or res.error:
        return None, res.error or f"HTTP {res.status}"
    return res, ""


async def _check(site: SiteConfig, p: ScrapeParams, work: Path) -> Report:
    """What each key finds on one page of each kind, in the order a crawl meets them."""
    state = CrawlState(connect(f"sqlite:///{work / 'check.sqlite'}"), site.name)
    cr = Crawler(site, p, state, open_store(None, str(work)))
    rep = Report()
    timeout = aiohttp.ClientTimeout(total=p.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": p.user_agent}) as session:
        cr.session = session
        robots = await _check_robots(cr, site, rep)
        listing_links, product_links = await _check_start(cr, site, rep)
        product_links = await _check_listing(cr, site, rep, listing_links, product_links)
        product_links = await _check_sitemap(cr, site, rep, robots, product_links)
        if not product_links:
            rep.problems.append("no product URL found to check (category_links, product_links, sitemap)")
        else:
            prod = await _check_product(cr, site, rep, product_links[0])
            if prod and prod["images"]:
                await _check_image(cr, p, rep, prod["images"][0])
    rep.requests = cr.c.requests
    return rep


async def _check_robots(cr: Crawler, site: SiteConfig, rep: Report):
    robots, limiter, delay = await cr.host(site.base_url)
    rep.sections.append(("robots.txt", normalize(urljoin(site.base_url, "/robots.txt")), [
        Finding("crawl-delay", [f"{delay:g} s → {limiter.rate:.2f} requests/s"] if delay else [],
                note="" if delay else f"none: {limiter.rate:.2f} requests/s (scrape.default_rate)"),
        Finding("sitemap lines", list(robots.sitemaps))]))
    return robots


async def _check_start(cr: Crawler, site: SiteConfig, rep: Report) -> tuple[list[str], list[str]]:
    """The start page's category and product links."""
    if not site.start_urls:
        return [], []
    home = normalize(urljoin(site.base_url, site.start_urls[0]))
    res, why = await _get(cr, home, "home")
    if res is None:
        rep.problems.append(f"start URL {home}: {why}")
        return [], []
    doc = Doc(res.body, res.headers.get("Content-Type"), res.url or home)
    listing_links = cr._abs(res.url or home, extract(doc, site.category_links), "category")
    product_links = cr._abs(res.url or home, extract(doc, site.product_links), "product")
    rep.sections.append(("start page", home, [
        Finding("category_links", listing_links), Finding("product_links", product_links)]))
    return listing_links, product_links


async def _check_listing(cr: Crawler, site: SiteConfig, rep: Report, listing_links: list[str],
                         product_links: list[str]) -> list[str]:
    """The first listing's product links and next page; the product links to go on with."""
    if not listing_links:
        if site.start_urls and site.category_links:
            rep.problems.append("category_links found no listing on the start page")
        return product_links
    url = listing_links[0]
    res, why = await _get(cr, url, "category")
    if res is None:
        rep.problems.append(f"listing {url}: {why}")
        return product_links
    got = cr._extract(res.url or url, "category", res.body, res.headers.get("Content-Type"))
    nxt = Finding("next_page" + (" / paginate" if site.paginate else ""), got["next"],
                  note="" if got["next"] else "fine if the listing has one page")
    rep.sections.append(("listing", url, [
        Finding("product_links", got["products"], required=True,
                note="" if got["products"] else "no product link on the listing"), nxt]))
    if not got["products"]:
        rep.problems.append("product_links found no product on the first listing")
    return got["products"] or product_links


async def _check_sitemap(cr: Crawler, site: SiteConfig, rep: Report, robots,
                         product_links: list[str]) -> list[str]:
    if site.sitemap is None:
        return product_links
    await cr.read_sitemaps(0)
    sm = list(cr.tokens.items())
    rep.sections.append(("sitemap", ", ".join(site.sitemap.url or robots.sitemaps or ("/sitemap.xml",)), [
        Finding("products", [f"{u} (lastmod {lm})" for u, lm in sm], required=site.sitemap.discover,
                note="" if sm else "no <loc> matched sitemap.products")]))
    if not sm and site.sitemap.discover:
        rep.problems.append("the sitemap listed no product (sitemap.products, sitemap.url)")
    return product_links or [u for u, _ in sm]


async def _check_product(cr: Crawler, site: SiteConfig, rep: Report, url: str) -> dict | None:
    """What each product key finds; the product as the crawler reads it (None: unreadable)."""
    res, why = await _get(cr, url, "product")
    if res is None:
        rep.problems.append(f"product {url}: {why}")
        return None
    doc = Doc(res.body, res.headers.get("Content-Type"), res.url or url)
    ps = site.product
    got = cr._extract(res.url or url, "product", res.body, res.headers.get("Content-Type"))
    prod = got.get("product") or {}
    label_note = "no label: every product would be skipped"
    if prod:
        parent = prod.get("attrs", {}).get("parent_label")
        label_note = (f"→ class {prod['label']!r}" + (f" (parent {parent!r})" if parent else "")
                      + (" — not in label_map" if prod.get("unmapped") else ""))
    findings = [
        Finding("product.id", extract(doc, ps.id),
                note=f"→ {prod['product_id']!r}" if prod else "the URL's last segment"),
        Finding("product.label", extract(doc, ps.label), required=True, note=label_note),
        Finding("product.images", prod.get("images") or cr._abs(
            res.url or url, extract(doc, ps.images), "image"), required=True),
        *(Finding(f"attributes.{k}", extract(doc, v)) for k, v in ps.attributes.items()),
    ]
    rep.sections.append(("product", url, findings))
    if not prod:
        rep.problems.append("product.label found nothing (or an unsafe label)")
    elif not prod["images"]:
        rep.problems.append("product.images found no image on the store's hosts")
    return prod or None


async def _check_image(cr: Crawler, p: ScrapeParams, rep: Report, img: str) -> None:
    """The first image's verdict, as the crawler's byte checks give it."""
    res, why = await _get(cr, img, "image")
    if res is None:
        rep.problems.append(f"image {img}: {why}")
        return
    v = check_image(res.body, res.headers.get("Content-Type"), p)
    rep.sections.append(("first image", img, [Finding(
        "verdict", [f"{v.format} {v.width}×{v.height}, {len(res.body):,} bytes"
                    if v.ok else f"rejected: {v.reason} ({v.detail})"],
        note="small: a thumbnail? (image_url_rewrite, strip, srcset)"
        if v.ok and max(v.width or 0, v.height or 0) < 400 else "")]))
    if not v.ok:
        rep.problems.append(f"the first image is rejected: {v.reason}")


def check_site(site: SiteConfig, params: ScrapeParams) -> Report:
    """Run the dry run and return its :class:`Report`."""
    with tempfile.TemporaryDirectory(prefix="gemcurate-site-check-") as tmp:
        return asyncio.run(_check(site, params, Path(tmp)))
