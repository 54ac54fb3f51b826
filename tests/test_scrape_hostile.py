"""The scraper against a hostile store (tests/hostile.py): nothing fetched off-site,
nothing half-downloaded kept, nothing marked removed that the crawl could not see."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.manifest import read_manifest
from pipeline.scrape import scrape
from tests.hostile import Hostile


@pytest.fixture
def fast(params_for):
    def make(**over):
        kw = dict(max_rate=200.0, default_rate=200.0, max_retries=2, backoff_base_s=0.01,
                  backoff_max_s=0.05, timeout_s=3.0)
        return params_for(**{**kw, **over})
    return make


def rows(res) -> pd.DataFrame:
    df = read_manifest(res.manifest_path)
    from urllib.parse import urlsplit
    # keyed by path: the hostile store's port differs between runs
    return df.assign(p=[urlsplit(u)._replace(scheme="", netloc="").geturl() for u in df["source_url"]]
                     ).set_index("p")


def test_a_clean_hostile_store_scrapes_completely(fast):
    with Hostile() as store:
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "complete", res.message
    df = rows(res)
    assert len(df) == 8 and df["excluded_reason"].isna().all()


def test_an_image_redirected_to_another_host_is_not_fetched(fast):
    with Hostile() as store, Hostile() as other:
        store.behave("/cdn/r-1-0.jpg", f"redirect:{other.base_url}/cdn/o-1-0.jpg")
        res = scrape(fast(), base_url=store.base_url)
    assert other.hits["/cdn/o-1-0.jpg"] == 0 and sum(other.hits.values()) == 0
    r = rows(res).loc["/cdn/r-1-0.jpg"]
    assert r["excluded_reason"] == "http_error" and "another host" in r["excluded_detail"]
    assert pd.isna(r["path"])


def test_a_product_page_redirected_off_site_is_not_parsed(fast):
    with Hostile() as store, Hostile() as other:
        store.behave("/product/R-2", f"redirect:{other.base_url}/product/R-1")
        res = scrape(fast(), base_url=store.base_url)
    assert sum(other.hits.values()) == 0
    assert res.status == "incomplete"  # a product page could not be seen


def test_a_redirect_on_the_same_host_is_followed_politely(fast):
    with Hostile() as store:
        store.behave("/cdn/r-1-0.jpg", "redirect:/cdn/o-1-0.jpg")
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "complete"
    r = rows(res).loc["/cdn/r-1-0.jpg"]
    assert pd.isna(r["excluded_reason"]) and r["image_id"] == rows(res).loc["/cdn/o-1-0.jpg", "image_id"]


def test_a_redirect_loop_is_cut_short_and_the_crawl_is_incomplete(fast):
    with Hostile() as store:
        store.behave("/category/ruby", "redirect:/category/ruby2")
        store.behave("/category/ruby2", "redirect:/category/ruby")
        res = scrape(fast(), base_url=store.base_url)
        loop_requests = store.hits["/category/ruby"] + store.hits["/category/ruby2"]
    assert res.status == "incomplete" and res.exit_code == 4
    assert loop_requests <= 6, loop_requests


@pytest.mark.parametrize("how", ["reset", "stall", "drip"])
def test_a_body_that_breaks_mid_way_is_retried_and_never_kept(fast, how):
    with Hostile() as store:
        store.behave("/cdn/o-2-1.jpg", how)
        res = scrape(fast(timeout_s=2.0), base_url=store.base_url)
        tries = store.hits["/cdn/o-2-1.jpg"]
    r = rows(res).loc["/cdn/o-2-1.jpg"]
    assert tries >= 2, tries  # retried: a broken body is a failed request, not a file
    assert r["excluded_reason"] == "http_error" and pd.isna(r["path"]), r.to_dict()


def test_a_listing_page_that_breaks_mid_way_marks_nothing_removed(fast):
    with Hostile() as store:
        first = scrape(fast(), base_url=store.base_url)
        assert first.status == "complete"
        store.behave("/category/ruby", "reset")
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "incomplete" and res.exit_code == 4
    again = read_manifest(first.manifest_path)  # the manifest of the complete crawl stands
    assert (again["status"] == "active").all()


def test_robots_that_turn_to_disallow_all_stop_the_crawl_and_remove_nothing(fast):
    with Hostile() as store:
        assert scrape(fast(), base_url=store.base_url).status == "complete"
        store.robots = "User-agent: *\nDisallow: /\n"
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "disallowed" and res.exit_code == 6, res.message
    df = read_manifest(res.manifest_path or first_manifest(fast))
    assert (df["status"] == "active").all()


def first_manifest(fast):
    from pipeline.manifest import manifest_path

    return manifest_path(fast().data.data_dir, "raw")


def test_an_empty_body_is_a_failed_request_not_a_file_to_revalidate(fast):
    """An empty 200 (with the real file's ETag) once became a stored empty blob that every
    later 304 kept; now it is retried, stored nowhere, and fetched whole next time."""
    with Hostile() as store:
        store.behave("/cdn/r-2-0.jpg", "empty")
        store.behave("/product/O-1", "empty")
        first = scrape(fast(), base_url=store.base_url)
        assert store.hits["/cdn/r-2-0.jpg"] >= 2 and first.status == "incomplete"
        store.behave("/product/O-1", "ok")
        first = scrape(fast(), base_url=store.base_url)  # the resume reads the product page
        r = rows(first).loc["/cdn/r-2-0.jpg"]
        assert r["excluded_reason"] == "http_error" and "empty body" in r["excluded_detail"]
        assert pd.isna(r["path"]) and pd.isna(r["etag"])
        store.behave("/cdn/r-2-0.jpg", "ok")
        res = scrape(fast(), base_url=store.base_url)
    r = rows(res).loc["/cdn/r-2-0.jpg"]
    assert pd.isna(r["excluded_reason"]) and pd.notna(r["path"])


@pytest.mark.parametrize("label", ["=HYPERLINK(\"http://127.0.0.1/\")", "..", "@SUM(1)"])
def test_a_label_that_would_be_a_formula_or_a_path_is_not_a_class(fast, label):
    with Hostile() as store:
        store.labels["R-2"] = label
        res = scrape(fast(), base_url=store.base_url)
    df = rows(res)
    assert label not in set(df["label"]) and "R-2" not in set(df["product_id"])
    assert res.stats["rejected"].get("unsafe_label") == 1 and len(df) == 6


@pytest.mark.parametrize(("how", "retried"), [
    ("status:500", True), ("status:502", True), ("status:503", True), ("status:504", True),
    ("status:404", False), ("status:410", False), ("status:401", False), ("status:204", False),
    ("status:206", False), ("status:301", False), ("badgzip", True), ("bigheader", True),
])
def test_every_http_outcome_of_an_image_is_recorded_and_retried_only_when_transient(fast, how, retried):
    with Hostile() as store:
        store.behave("/cdn/o-1-1.jpg", how)
        res = scrape(fast(), base_url=store.base_url)
        tries = store.hits["/cdn/o-1-1.jpg"]
    assert res.status == "complete"  # a failed image is recorded, the catalog was seen
    r = rows(res).loc["/cdn/o-1-1.jpg"]
    assert r["excluded_reason"] == "http_error" and r["excluded_detail"], r.to_dict()
    assert pd.isna(r["path"])
    assert (tries == 3) if retried else (tries == 1), (how, tries)  # max_retries 2


@pytest.mark.parametrize("how", ["status:404", "status:500", "badgzip", "reset"])
def test_a_listing_page_that_fails_leaves_the_crawl_incomplete(fast, how):
    with Hostile() as store:
        store.behave("/category/opal", how)
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "incomplete" and res.manifest_path is None


def test_a_gzip_bomb_is_refused_while_streaming(fast):
    with Hostile() as store:
        store.behave("/cdn/o-2-0.jpg", "gzipbomb")
        res = scrape(fast(max_bytes=5_000_000), base_url=store.base_url)
    r = rows(res).loc["/cdn/o-2-0.jpg"]
    assert r["excluded_reason"] == "too_large_bytes" and pd.isna(r["path"])
