import pytest

from pipeline.stages.scrape.robots import Robots

TEXT = """
# comment
User-agent: gemcurate
Crawl-delay: 0.25
Disallow: /private
Allow: /private/ok$
Disallow: /*.pdf$

User-agent: *
Crawl-delay: 2
Disallow: /cart
Disallow: /search
Request-rate: 1/5s

User-agent: BadBot
Disallow: /
"""


@pytest.mark.parametrize("agent, path, allowed", [
    ("gemcurate/0.1 (x)", "/", True),
    ("gemcurate/0.1 (x)", "/private/x", False),
    ("gemcurate/0.1 (x)", "/private/ok", True),
    ("gemcurate/0.1 (x)", "/private/ok/more", False),
    ("gemcurate/0.1 (x)", "/docs/a.pdf", False),
    ("gemcurate/0.1 (x)", "/docs/a.pdf?x=1", True),
    ("gemcurate/0.1 (x)", "/cart", True),  # its own group does not disallow /cart
    ("other", "/cart/add", False),
    ("other", "/search?q=1", False),
    ("other", "/category/ruby", True),
    ("BadBot/2", "/anything", False),
    ("other", "http://127.0.0.1:8000/cart", False),
])
def test_allowed(agent, path, allowed):
    assert Robots.parse(TEXT).allowed(path, agent) is allowed


def test_crawl_delay_fractional_and_request_rate():
    r = Robots.parse(TEXT)
    assert r.crawl_delay("gemcurate/0.1") == 0.25
    assert r.crawl_delay("someone") == 5.0  # Request-rate 1/5s is stricter than Crawl-delay 2


def test_allow_wins_a_tie_and_empty_disallow_allows():
    r = Robots.parse("User-agent: *\nDisallow: /a\nAllow: /a\n")
    assert r.allowed("/a", "x")
    assert Robots.parse("User-agent: *\nDisallow:\n").allowed("/anything", "x")


def test_no_group_allows_everything():
    assert Robots.parse("").allowed("/x", "y") and Robots.parse("").crawl_delay("y") is None
