"""Why the crawler parses with parsel: extraction time per page against BeautifulSoup.

Serves the demo storefront, downloads a sample of its listing and product pages once,
then extracts what the demo site adapter extracts (product links on a listing; id,
label, gallery and six attributes on a product page) with

* parsel (lxml + cssselect, what ``pipeline/stages/scrape`` uses), with the adapter's own
  selectors, and
* BeautifulSoup 4 with ``html.parser`` and with ``lxml``, using the equivalent
  ``select()`` calls,

and prints the median microseconds per page and the ratio to parsel. Needs
``pip install beautifulsoup4`` (not a gemcurate dependency).

Usage:
    .venv/bin/python bench/parsers.py [--pages 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from parsel import Selector  # noqa: E402

from pipeline.demo import process  # noqa: E402
from pipeline.stages.scrape.site import first, load_site, select  # noqa: E402


def fetch(base: str, path: str) -> str:
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return r.read().decode()


def parsel_listing(html: str, site) -> list[str]:
    return select(Selector(text=html), site.product_links)


def parsel_product(html: str, site) -> tuple:
    sel = Selector(text=html)
    ps = site.product
    return (first(sel, ps.id), first(sel, ps.label, ps.label_pattern), select(sel, ps.images),
            {k: first(sel, v) for k, v in ps.attributes.items()})


def bs4_listing(html: str, parser: str) -> list[str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, parser)
    return [a["href"] for a in soup.select(".product-grid .product-card a.product-link")]


def bs4_product(html: str, parser: str) -> tuple:
    import re

    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, parser)

    def text(css: str) -> str | None:
        el = soup.select_one(css)
        return el.get_text(strip=True) if el else None

    label = soup.select_one("nav.breadcrumb a.category")
    m = re.search(r"/category/([^/?#]+)", label["href"]) if label else None
    price = soup.select_one("[itemprop=price]")
    return (text("dd[itemprop=sku]"), m.group(1) if m else None,
            [a["href"] for a in soup.select(".gallery a.zoom")],
            {"title": text("h1.product-title"), "price": price["content"] if price else None,
             "colour": text("dd[itemprop=colour]"), "cut": text("dd[itemprop=cut]"),
             "carat": text("dd[itemprop=carat]"), "origin": text("dd[itemprop=origin]")})


def per_page_us(fn, pages: list[str], *args) -> float:
    times = []
    for html in pages:
        t = time.perf_counter()
        fn(html, *args)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=200)
    a = ap.parse_args()
    site = load_site(ROOT / "sites" / "demo.yaml")
    with process.storefront(["--seed", "5", "--classes", "8", "--products-per-class", "30",
                             "--rate-limit", "1000", "--burst", "500", "--faults", "0"],
                            cwd=ROOT) as store:
        home = fetch(store.base_url, "/")
        cats = select(Selector(text=home), site.category_links)
        listings = [fetch(store.base_url, c) for c in cats]
        links = [u for page in listings for u in parsel_listing(page, site)][: a.pages]
        products = [fetch(store.base_url, u) for u in links]
    # the answers agree before anything is timed
    assert bs4_listing(listings[0], "lxml") == parsel_listing(listings[0], site)
    pa, pb = parsel_product(products[0], site), bs4_product(products[0], "lxml")
    assert pa[:3] == pb[:3] and pa[3] == pb[3], (pa, pb)
    rows = []
    for name, lfn, pfn, args in (("parsel (lxml)", parsel_listing, parsel_product, (site,)),
                                 ("bs4 html.parser", bs4_listing, bs4_product, ("html.parser",)),
                                 ("bs4 lxml", bs4_listing, bs4_product, ("lxml",))):
        for _ in range(2):  # warm up
            lfn(listings[0], *args)
        rows.append((name, per_page_us(lfn, listings * 5, *args), per_page_us(pfn, products, *args)))
    ref_l, ref_p = rows[0][1], rows[0][2]
    print(f"{len(listings)} listing pages ×5, {len(products)} product pages of the demo storefront")
    print(f"{'parser':<18}{'listing µs':>12}{'×':>7}{'product µs':>13}{'×':>7}")
    for name, lt, pt in rows:
        print(f"{name:<18}{lt:>12.0f}{lt / ref_l:>7.1f}{pt:>13.0f}{pt / ref_p:>7.1f}")


if __name__ == "__main__":
    main()
