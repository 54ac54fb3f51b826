"""Extractors and sitemaps as functions: known pages in, known values out."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

from pipeline.core.config import ConfigError
from pipeline.demo.layouts import SCHEMA_ORG, SITEMAP_NS
from pipeline.stages.scrape.crawler import next_page_number, parse_sitemap
from pipeline.stages.scrape.extract import Doc, Extractor, extract, largest_srcset
from pipeline.stages.scrape.site import load_site
from tests.helpers import ROOT

PAGE = """<html><head>
<meta property="og:image" content="http://127.0.0.1/og.jpg">
<script type="application/ld+json">{"@context": "@SCHEMA_ORG@", "@graph": [
  {"@type": "BreadcrumbList"},
  {"@type": "Product", "name": "Ruby", "sku": "R-1",
   "image": [{"@type": "ImageObject", "url": "/a.jpg"}, "/b.jpg"],
   "offers": {"price": "120.00"}}]}</script>
<script type="application/ld+json">{"@type": "Product", "image": "/c.jpg"}</script>
<script type="application/ld+json">{not json</script>
<script type="text/x-magento-init">{"[data-gallery-role=gallery-placeholder]":
  {"mage/gallery/gallery": {"data": [{"full": "/m/full1.jpg", "img": "/m/600/1.jpg"},
                                     {"full": "/m/full2.jpg"}]}}}</script>
</head><body>
<dl><dd itemprop="sku"> SKU-0042 </dd></dl>
<img class="g" src="/p-600x600.jpg" srcset="/p-100x100.jpg 100w, /p-1200x1200.jpg 1200w, /p-300x300.jpg 300w">
<img class="g" src="data:," data-src="/q-600x600.jpg" srcset="/q.jpg 1x, /q@2x.jpg 2x">
<span class="type">Swiss Blue Topaz</span>
</body></html>""".replace("@SCHEMA_ORG@", SCHEMA_ORG)


def ex(**kw) -> Extractor:
    e = Extractor(**kw)
    e.check()
    return e


@pytest.mark.parametrize("spec, want", [
    ("dd[itemprop=sku]::text", ["SKU-0042"]),
    (ex(xpath="//dd[@itemprop='sku']/text()", pattern=r"SKU-(\d+)"), ["0042"]),
    (ex(jsonld="image"), ["/a.jpg", "/b.jpg", "/c.jpg"]),  # ImageObject, string, single URL
    (ex(jsonld="offers.price"), ["120.00"]),
    (ex(meta="og:image"), ["http://127.0.0.1/og.jpg"]),
    (ex(script="script[type='text/x-magento-init']", json='*."mage/gallery/gallery".data[].full'),
     ["/m/full1.jpg", "/m/full2.jpg"]),
    (ex(css="img.g::attr(srcset)", srcset=True), ["/p-1200x1200.jpg", "/q@2x.jpg"]),
    (ex(css="img.g::attr(src)", strip=r"-\d+x\d+(?=\.jpg$)"), ["/p.jpg", "data:,"]),
    (ex(css="span.type::text", slug=True, template="/collections/{}"), ["/collections/swiss-blue-topaz"]),
    # fallbacks: the first that finds anything
    (("div.none::text", ex(jsonld="name")), ["Ruby"]),
    (ex(jsonld="nothing.here"), []),                     # a query that matches nothing
    (ex(css="div.gallery a::attr(href)"), []),
])
def test_an_extractor_finds_what_the_page_holds(spec, want):
    assert extract(Doc(PAGE, "text/html"), spec) == want


def test_json_sources_and_malformed_json():
    body = json.dumps({"products": [{"handle": "a b", "images": [{"src": "/x_200x.jpg"}]},
                                    {"handle": "c", "images": []}], "next": "Y2Vy"})
    doc = Doc(body, "application/json")
    assert extract(doc, ex(json="products[].handle", template="/products/{}.json")) == \
        ["/products/a%20b.json", "/products/c.json"]
    assert extract(doc, ex(json="products[].images[].src", strip=r"_\d*x\d*(?=\.jpg$)")) == ["/x.jpg"]
    assert extract(doc, ex(json="next", template="?cursor={}")) == ["?cursor=Y2Vy"]  # a cursor
    assert extract(Doc('{"products": [', "application/json"), ex(json="products[].handle")) == []
    assert extract(Doc("[" * 100_000, "application/json"), ex(json="a")) == []  # too deep


def test_srcset_picks_the_largest_candidate():
    assert largest_srcset("a.jpg 300w, b.jpg 1200w,c.jpg 600w") == "b.jpg"
    assert largest_srcset("a.jpg, b.jpg 2x") == "b.jpg"
    assert largest_srcset("http://127.0.0.1/y,z.jpg 100w") == "http://127.0.0.1/y,z.jpg"
    assert largest_srcset("") is None


@pytest.mark.parametrize("value, error", [
    ({"css": "a", "xpath": "//a"}, "give exactly one of"),
    ({"json": "products[?"}, "invalid JMESPath"),
    ({"xpath": "//a[@"}, "invalid XPath"),
    ({"css": "a[", "srcset": True}, "invalid CSS selector"),
    ({"script": "script", "css": "a"}, "script: only with json"),
    ({"json": "a", "template": "/x"}, "must hold {} exactly once"),
    ({"json": "a", "jsonpath": "$.a"}, "unknown key (did you mean 'json'?)"),
])
def test_a_bad_extractor_names_the_file_and_the_key(tmp_path, value, error):
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    site["product"]["images"] = value
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(site))
    with pytest.raises(ConfigError) as e:
        load_site(f)
    assert str(e.value).startswith(f"{f}: product.images") and error in str(e.value)


def test_site_keys_for_taxonomy_sitemaps_and_pagination_are_validated(tmp_path):
    site = yaml.safe_load((ROOT / "sites" / "demo.yaml").read_text())
    for key, value, error in [
        ("label_map", {"a": {"label": "x/../y"}}, "label_map.a.label"),
        ("label_map", {"a": {"lable": "x"}}, "did you mean 'label'"),
        ("unmapped_labels", "drop", "not one of"),
        ("sitemap", {"products": "("}, "sitemap.products: invalid regular expression"),
        ("sitemap", {"product_url": "/p"}, "sitemap.product_url"),
        ("paginate", {"param": "p&x=1"}, "paginate.param"),
        ("start_urls", [], "start_urls: at least one"),
    ]:
        f = tmp_path / "s.yaml"
        f.write_text(yaml.safe_dump({**site, key: value}))
        with pytest.raises(ConfigError, match=error.replace("(", r"\(")):
            load_site(f)
    f.write_text(yaml.safe_dump({**site, "start_urls": [], "sitemap": {"discover": True},
                                 "label_map": {"swiss-blue-topaz": {"label": "swiss-blue-topaz",
                                                                    "parent": "topaz"}}}))
    s = load_site(f)
    assert s.target("swiss-blue-topaz") == ("swiss-blue-topaz", "topaz", True)
    assert s.target("ruby") == ("ruby", None, False)


def test_next_page_number():
    assert next_page_number("http://127.0.0.1/c/p.json?limit=250", "page", 1, 100) == \
        "http://127.0.0.1/c/p.json?limit=250&page=2"
    assert next_page_number("http://127.0.0.1/c?page=7&x=1", "page", 1, 100) == "http://127.0.0.1/c?x=1&page=8"
    assert next_page_number("http://127.0.0.1/c?page=3", "page", 1, 3) is None  # max_pages
    assert next_page_number("http://127.0.0.1/c?page=abc", "page", 1, 100) is None


SITEMAP = (f"<?xml version='1.0'?><urlset xmlns='{SITEMAP_NS}'>"
           "<url><loc> http://127.0.0.1/p/1 </loc><lastmod>2026-01-05</lastmod></url>"
           "<url><loc>http://127.0.0.1/p/2</loc></url></urlset>")


def test_sitemaps_and_sitemap_indexes_are_parsed():
    assert parse_sitemap(SITEMAP.encode(), 10**6) == {
        "sitemaps": [], "urls": [("http://127.0.0.1/p/1", "2026-01-05"), ("http://127.0.0.1/p/2", None)]}
    index = (f"<sitemapindex xmlns='{SITEMAP_NS}'><sitemap>"
             "<loc>http://127.0.0.1/sm1.xml</loc></sitemap></sitemapindex>")
    assert parse_sitemap(index.encode(), 10**6)["sitemaps"] == ["http://127.0.0.1/sm1.xml"]
    assert parse_sitemap(gzip.compress(SITEMAP.encode()), 10**6)["urls"][0][0] == "http://127.0.0.1/p/1"


@pytest.mark.parametrize("body, error", [
    (b"<html><body>Not found</body></html>", "not a sitemap"),
    (gzip.compress(b"<urlset>" + b" " * 2_000_000 + b"</urlset>"), "more than max_bytes"),
    (b"\x1f\x8bnot gzip", "broken gzip"),
])
def test_what_is_not_a_sitemap_is_refused(body, error):
    with pytest.raises(ValueError, match=error):
        parse_sitemap(body, 1_000_000)


def test_a_sitemap_never_resolves_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = (f"<?xml version='1.0'?><!DOCTYPE u [<!ENTITY x SYSTEM 'file://{secret}'>]>"
            "<urlset><url><loc>http://127.0.0.1/&x;</loc></url></urlset>").encode()
    urls = parse_sitemap(body, 10**6)["urls"]
    assert all("TOPSECRET" not in u for u, _ in urls)
