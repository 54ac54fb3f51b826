"""The scraper against a hostile store (tests/hostile.py): nothing fetched off-site,
nothing half-downloaded kept, nothing marked removed that the crawl could not see."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.core.manifest import read_manifest
from pipeline.stages.scrape import scrape
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
    # a redirect off-site can never succeed: the page is dead at once, the crawl completes
    assert res.status == "complete_with_dead_links" and res.exit_code == 0, res.message
    dead = {r["url"].split("/", 3)[3]: r for r in res.stats["dead_urls"]}
    assert list(dead) == ["product/R-2"] and "another host" in dead["product/R-2"]["detail"]
    assert set(rows(res)["product_id"]) == {"R-1", "O-1", "O-2"}


def test_a_redirect_on_the_same_host_is_followed_politely(fast):
    with Hostile() as store:
        store.behave("/cdn/r-1-0.jpg", "redirect:/cdn/o-1-0.jpg")
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "complete"
    r = rows(res).loc["/cdn/r-1-0.jpg"]
    assert pd.isna(r["excluded_reason"]) and r["image_id"] == rows(res).loc["/cdn/o-1-0.jpg", "image_id"]


def test_a_redirect_loop_is_cut_short_and_the_page_is_dead(fast):
    with Hostile() as store:
        store.behave("/category/ruby", "redirect:/category/ruby2")
        store.behave("/category/ruby2", "redirect:/category/ruby")
        res = scrape(fast(), base_url=store.base_url)
        loop_requests = store.hits["/category/ruby"] + store.hits["/category/ruby2"]
    assert res.status == "complete_with_dead_links" and res.exit_code == 0
    assert [r["url"].rsplit("/", 1)[1] for r in res.stats["dead_urls"]] == ["ruby"]
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
    from pipeline.core.manifest import manifest_path

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
    # a failed image is recorded, the catalog was seen: the crawl completes either way; a
    # 4xx can never succeed, so that image is dead at once (listed, retried at a full pass)
    dead = how.startswith("status:4") or how == "status:301"  # 301 without Location
    assert res.status == ("complete_with_dead_links" if dead else "complete") and res.exit_code == 0
    assert res.stats["dead_urls_total"] == dead and res.stats["failed_urls_total"] == (not dead)
    r = rows(res).loc["/cdn/o-1-1.jpg"]
    assert r["excluded_reason"] == "http_error" and r["excluded_detail"], r.to_dict()
    assert pd.isna(r["path"])
    assert (tries == 3) if retried else (tries == 1), (how, tries)  # max_retries 2


@pytest.mark.parametrize("how", ["status:500", "badgzip", "reset"])
def test_a_listing_page_that_fails_transiently_leaves_the_crawl_incomplete(fast, how):
    with Hostile() as store:
        store.behave("/category/opal", how)
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "incomplete" and res.manifest_path is None and res.exit_code == 4
    assert "give_up_after" in res.message and "/category/opal" in res.message


@pytest.mark.parametrize("how", ["status:404", "status:410", "status:403"])
def test_a_listing_page_that_can_never_answer_is_dead_at_once(fast, how):
    with Hostile() as store:
        store.behave("/category/opal", how)
        res = scrape(fast(), base_url=store.base_url)
        tries = store.hits["/category/opal"]
    assert res.status == "complete_with_dead_links" and res.exit_code == 0, res.message
    assert tries == 1  # a 4xx is not retried
    assert [r["url"].rsplit("/", 1)[1] for r in res.stats["dead_urls"]] == ["opal"]
    assert set(rows(res)["product_id"]) == {"R-1", "R-2"}


def test_one_dead_page_and_one_dead_image_still_give_a_manifest_on_the_first_run(fast):
    """A deleted product (404) and an image that always answers 500: the first crawl
    writes the manifest, lists both, and says the dead page's status in raw_summary.json."""
    import json

    with Hostile() as store:
        store.behave("/product/O-2", "status:404")
        store.behave("/cdn/r-1-1.jpg", "status:500")
        res = scrape(fast(give_up_after=2), base_url=store.base_url)
        assert res.status == "complete_with_dead_links" and res.exit_code == 0, res.message
        summary = json.loads(res.manifest_path.with_name("raw_summary.json").read_text())
        assert [r["url"].rsplit("/", 1)[1] for r in summary["dead_urls"]] == ["O-2"]
        assert [r["url"].rsplit("/", 1)[1] for r in summary["failed_urls"]] == ["r-1-1.jpg"]
        df = rows(res)
        assert len(df) == 6 and df.loc["/cdn/r-1-1.jpg", "excluded_reason"] == "http_error"
        # the second pass in a row gives the image up as dead too; nothing else changes
        again = scrape(fast(give_up_after=2), base_url=store.base_url)
        assert again.status == "complete_with_dead_links"
        assert sorted(r["url"].rsplit("/", 1)[1] for r in again.stats["dead_urls"]) == ["O-2", "r-1-1.jpg"]
    from pipeline.stages.scrape import format_summary
    from pipeline.stages.scrape.site import load_site

    text = format_summary(again, load_site("sites/demo.yaml", store.base_url))
    assert "dead         2 URL(s)" in text and "/product/O-2" in text


def test_a_listing_page_that_keeps_failing_is_given_up_and_keeps_what_it_listed(fast):
    """Transient failures are retried (incomplete, nothing removed) until give_up_after
    passes in a row; then the page is dead, the crawl completes, and the products it listed
    keep their last known rows. An incremental pass does not ask the dead page again; the
    next full pass does, and a page that answers again is forgotten as dead."""
    with Hostile() as store:
        first = scrape(fast(give_up_after=2, full_refresh_every=3), base_url=store.base_url)
        assert first.status == "complete"
        store.behave("/category/ruby", "status:503")
        p = fast(give_up_after=2, full_refresh_every=3)
        one = scrape(p, base_url=store.base_url)
        assert one.status == "incomplete" and one.exit_code == 4
        two = scrape(p, base_url=store.base_url)  # resumes the same run: the second pass
        assert two.status == "complete_with_dead_links" and two.exit_code == 0, two.message
        df = rows(two)
        assert len(df) == 8 and (df["status"] == "active").all() and df["excluded_reason"].isna().all()
        assert set(df.loc[df["product_id"].isin(["R-1", "R-2"]), "change"]) == {"unchanged"}
        assert two.stats["kept_behind_dead"]["products"] == 2
        store.behave("/category/ruby", "ok")
        before = store.hits["/category/ruby"]
        three = scrape(p, base_url=store.base_url)  # incremental: the dead page is not asked
        assert store.hits["/category/ruby"] == before and three.stats["dead_skipped"] == 1
        assert three.status == "complete_with_dead_links"
        assert (rows(three)["status"] == "active").all()
        four = scrape(p, base_url=store.base_url)  # full pass (every 3rd): asked, answers
        assert store.hits["/category/ruby"] == before + 1
    assert four.status == "complete" and four.stats["dead_urls_total"] == 0, four.message


def test_an_image_that_fails_later_keeps_its_last_good_copy(fast):
    with Hostile() as store:
        first = scrape(fast(), base_url=store.base_url)
        good = rows(first).loc["/cdn/o-1-0.jpg"]
        store.behave("/cdn/o-1-0.jpg", "status:404")
        res = scrape(fast(full_refresh_every=1), base_url=store.base_url)
    r = rows(res).loc["/cdn/o-1-0.jpg"]
    assert pd.isna(r["excluded_reason"]) and r["path"] == good["path"] and r["status"] == "active"
    assert res.stats["images_kept_after_failure"] == 1
    assert [d["url"].rsplit("/", 1)[1] for d in res.stats["dead_urls"]] == ["o-1-0.jpg"]


def test_a_gzip_bomb_is_refused_while_streaming(fast):
    with Hostile() as store:
        store.behave("/cdn/o-2-0.jpg", "gzipbomb")
        res = scrape(fast(max_bytes=5_000_000), base_url=store.base_url)
    r = rows(res).loc["/cdn/o-2-0.jpg"]
    assert r["excluded_reason"] == "too_large_bytes" and pd.isna(r["path"])


def test_a_run_stopped_at_one_address_is_not_resumed_at_another(fast):
    """A stop (a ban, unreadable robots.txt) leaves an unfinished run whose frontier holds
    the old address's URLs; the next scrape at another address (the store moved, a staging
    mirror) starts a new run. Resuming it left the old home URL pending for good: every
    later crawl was incomplete."""
    with Hostile() as old:
        old.behave("/robots.txt", "status:503")
        first = scrape(fast(), base_url=old.base_url)
    assert first.status == "stopped", first.message
    with Hostile() as new:
        res = scrape(fast(), base_url=new.base_url)
    assert res.status == "complete" and not res.resumed, res.message
    assert len(rows(res)) == 8


def test_robots_that_cannot_be_read_for_a_host_stop_the_crawl_with_a_reason(fast):
    with Hostile() as store:
        store.behave("/robots.txt", "status:503")
        res = scrape(fast(), base_url=store.base_url)
    assert res.status == "stopped" and res.exit_code == 5 and "robots.txt" in res.message
