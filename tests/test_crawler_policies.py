"""The crawler's request path, one policy at a time (each without a server): what an answer
is, what a 429 does to the host's pace, when a 403 is a ban."""

from __future__ import annotations

import pytest

from pipeline.core.blobstore import BlobStore
from pipeline.stages.scrape.crawler import Crawler, Stop
from pipeline.stages.scrape.ratelimit import HostLimiter
from pipeline.stages.scrape.site import load_site
from pipeline.stages.scrape.state import CrawlState, connect
from tests.helpers import ROOT, params


@pytest.fixture
def crawler(tmp_path):
    p = params(tmp_path / "data", scrape={"max_retries": 2, "max_retry_after_s": 60.0})
    site = load_site(ROOT / "sites" / "demo.yaml", "http://127.0.0.1:9")
    state = CrawlState(connect(f"sqlite:///{tmp_path}/state.sqlite"), site.name)
    return Crawler(site, p.scrape, state, BlobStore(tmp_path / "store"))


def test_an_answer_is_a_whole_200_a_304_or_a_redirect_and_an_empty_200_is_not(crawler):
    assert crawler._answered_with(200, b"x", None, False) == (True, 200, None)
    assert crawler._answered_with(304, b"", None, False)[0]
    assert crawler._answered_with(302, b"", None, False)[0]
    assert crawler._answered_with(200, b"", None, False) == (False, None, "empty body")
    assert crawler._answered_with(200, b"", None, True)[0]  # robots.txt may be empty
    assert crawler._answered_with(503, b"busy", None, False) == (False, 503, None)


def test_a_429_pauses_and_slows_the_host_and_a_long_retry_after_stops_the_crawl(crawler):
    lim = HostLimiter(10.0, 0.0)
    assert crawler._on_429("http://127.0.0.1:9/x", lim, 1.5, 1)
    assert lim.rate < 10.0 and lim.slowdowns == 1 and crawler.c.rate_limited == 1
    assert not crawler._on_429("http://127.0.0.1:9/x", lim, 0.0, 4 * 3 + 1)  # too often: give up
    with pytest.raises(Stop):
        crawler._on_429("http://127.0.0.1:9/x", lim, 3600.0, 1)
    assert crawler.stop_status == "stopped" and "Retry-After" in crawler.stop_reason


@pytest.mark.parametrize(("body", "retry_after", "before", "banned"), [
    (b"Forbidden", None, 0, False),              # one 403: that URL's answer
    (b"Forbidden", None, 2, True),               # the third in a row: a ban
    (b"You are banned", None, 0, True),          # says so
    (b"Forbidden", 120.0, 0, True),              # asks to come back later
])
def test_a_403_is_a_ban_only_when_it_says_so_or_repeats(crawler, body, retry_after, before, banned):
    crawler.consecutive_403 = before
    if banned:
        with pytest.raises(Stop):
            crawler._on_403("http://127.0.0.1:9/x", retry_after, body)
        assert crawler.stop_status == "banned" and crawler.c.bans == 1
    else:
        crawler._on_403("http://127.0.0.1:9/x", retry_after, body)
        assert crawler.stop_reason is None and crawler.c.bans == 0
