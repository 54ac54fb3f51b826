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
    state = CrawlState(connect(f"sqlite:///{work / 'check.sqlite'}"), site.name)
    cr = Crawler(site, p, state, open_store(None, str(work)))
    rep = Report()
    timeout = aiohttp.ClientTimeout(total=p.timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": p.user_agent}) as session:
        cr.session = session
        robots, limiter, delay = await cr.host(site.base_url)
        rep.sections.append(("robots.txt", normalize(urljoin(site.base_url, "/robots.txt")), [
            Finding("crawl-delay", [f"{delay:g} s → {limiter.rate:.2f} requests/s"] if delay else [],
                    note="" if delay else f"none: {limiter.rate:.2f} requests/s (scrape.default_rate)"),
            Finding("sitemap lines", list(robots.sitemaps))]))
        listing_links: list[str] = []
        product_links: list[str] = []
        if site.start_urls:
            home = normalize(urljoin(site.base_url, site.start_urls[0]))
            res, why = await _get(cr, home, "home")
            if res is None:
                rep.problems.append(f"start URL {home}: {why}")
            else:
                doc = Doc(res.body, res.headers.get("Content-Type"), res.url or home)
                listing_links = cr._abs(res.url or home, extract(doc, site.category_links), "category")
                product_links = cr._abs(res.url or home, extract(doc, site.product_links), "product")
                rep.sections.append(("start page", home, [
                    Finding("category_links", listing_links), Finding("product_links", product_links)]))
        if listing_links:
            url = listing_links[0]
            res, why = await _get(cr, url, "category")
            if res is None:
                rep.problems.append(f"listing {url}: {why}")
            else:
                got = cr._extract(res.url or url, "category", res.body, res.headers.get("Content-Type"))
                product_links = got["products"] or product_links
                nxt = Finding("next_page" + (" / paginate" if site.paginate else ""), got["next"],
                              note="" if got["next"] else "fine if the listing has one page")
                rep.sections.append(("listing", url, [
                    Finding("product_links", got["products"], required=True,
                            note="" if got["products"] else "no product link on the listing"), nxt]))
                if not got["products"]:
                    rep.problems.append("product_links found no product on the first listing")
        elif site.start_urls and site.category_links:
            rep.problems.append("category_links found no listing on the start page")
        if site.sitemap is not None:
            await cr.read_sitemaps(0)
            sm = list(cr.tokens.items())
            rep.sections.append(("sitemap", ", ".join(site.sitemap.url or robots.sitemaps
                                                      or ("/sitemap.xml",)), [
                Finding("products", [f"{u} (lastmod {lm})" for u, lm in sm],
                        required=site.sitemap.discover,
                        note="" if sm else "no <loc> matched sitemap.products")]))
            if not sm and site.sitemap.discover:
                rep.problems.append("the sitemap listed no product (sitemap.products, sitemap.url)")
            if not product_links:
                product_links = [u for u, _ in sm]
        if not product_links:
            rep.problems.append("no product URL found to check (category_links, product_links, sitemap)")
        else:
            url = product_links[0]
            res, why = await _get(cr, url, "product")
            if res is None:
                rep.problems.append(f"product {url}: {why}")
            else:
                doc = Doc(res.body, res.headers.get("Content-Type"), res.url or url)
                ps = site.product
                got = cr._extract(res.url or url, "product", res.body, res.headers.get("Content-Type"))
                prod = got.get("product") or {}
                raw_label = extract(doc, ps.label)
                findings = [
                    Finding("product.id", extract(doc, ps.id),
                            note=f"→ {prod['product_id']!r}" if prod else "the URL's last segment"),
                    Finding("product.label", raw_label, required=True,
                            note=f"→ class {prod['label']!r}" + (
                                f" (parent {prod['attrs']['parent_label']!r})"
                                if prod.get("attrs", {}).get("parent_label") else "")
                            + (" — not in label_map" if prod.get("unmapped") else "")
                            if prod else "no label: every product would be skipped"),
                    Finding("product.images", prod.get("images") or cr._abs(
                        res.url or url, extract(doc, ps.images), "image"), required=True),
                ]
                findings += [Finding(f"attributes.{k}", extract(doc, v)) for k, v in ps.attributes.items()]
                rep.sections.append(("product", url, findings))
                if not prod:
                    rep.problems.append("product.label found nothing (or an unsafe label)")
                elif not prod["images"]:
                    rep.problems.append("product.images found no image on the store's hosts")
                else:
                    img = prod["images"][0]
                    res, why = await _get(cr, img, "image")
                    if res is None:
                        rep.problems.append(f"image {img}: {why}")
                    else:
                        v = check_image(res.body, res.headers.get("Content-Type"), p)
                        rep.sections.append(("first image", img, [Finding(
                            "verdict", [f"{v.format} {v.width}×{v.height}, {len(res.body):,} bytes"
                                        if v.ok else f"rejected: {v.reason} ({v.detail})"],
                            note="small: a thumbnail? (image_url_rewrite, strip, srcset)"
                            if v.ok and max(v.width or 0, v.height or 0) < 400 else "")]))
                        if not v.ok:
                            rep.problems.append(f"the first image is rejected: {v.reason}")
    rep.requests = cr.c.requests
    return rep


def check_site(site: SiteConfig, params: ScrapeParams) -> Report:
    """Run the dry run and return its :class:`Report`."""
    with tempfile.TemporaryDirectory(prefix="gemcurate-site-check-") as tmp:
        return asyncio.run(_check(site, params, Path(tmp)))
