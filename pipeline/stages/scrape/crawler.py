"""The polite, resumable, incremental crawler behind ``gemcurate scrape``.

One asyncio loop, ``concurrency`` workers, one :class:`HostLimiter` per host
(rate from robots.txt ``Crawl-delay``, capped by params). Each finished URL is
committed to the state database together with its result, so a killed crawl
resumes; a new crawl sends conditional requests (ETag / Last-Modified) and
records what was added, changed and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from multidict import CIMultiDict
from parsel import Selector
from tqdm import tqdm

from pipeline.core.blobstore import BlobStore, sha256_hex
from pipeline.core.config import ScrapeParams
from pipeline.core.manifest import text_problem
from pipeline.stages.scrape.downloads import EXT, check_image, sniff
from pipeline.stages.scrape.extract import Doc, extract, extract_first
from pipeline.stages.scrape.ratelimit import HostLimiter
from pipeline.stages.scrape.robots import Robots
from pipeline.stages.scrape.site import SiteConfig
from pipeline.stages.scrape.state import CrawlState, now

logger = logging.getLogger(__name__)


class Stop(Exception):
    """The crawl must stop now (ban, interruption); state is kept for a resume."""


class TooLarge(Exception):
    """A body exceeded ``max_bytes``."""


MAX_REDIRECTS = 5
PAGE_KINDS = ("home", "category", "product")
ROBOTS_REFUSED = "robots.txt now disallows this catalog page"
# an image verdict that a new request could change: such a product is never skipped
RETRY_REASONS = ("http_error", "too_large_bytes", "disallowed_by_robots")


class BrokenBody(Exception):
    """The headers came, the whole body did not (reset, stall, drip past the timeout)."""


@dataclass
class Fetched:
    """An HTTP outcome after retries: the outcome of the *whole* body, never of its headers.

    ``headers`` is case-insensitive (``headers.get("ETag")`` finds an ``Etag``).
    """

    status: int | None
    headers: CIMultiDict = field(default_factory=CIMultiDict)
    body: bytes = b""
    error: str | None = None
    attempts: int = 1
    url: str | None = None  # where the body came from, after redirects
    # no later request can succeed: an off-site or looping redirect, a 4xx other than 429,
    # refused by scope or robots.txt, a body over max_bytes
    permanent: bool = False


@dataclass
class Counters:
    """What a crawl did (printed as the summary and written as JSON)."""

    requests: int = 0
    pages: int = 0
    pages_304: int = 0
    images: int = 0
    images_304: int = 0
    bytes: int = 0
    rate_limited: int = 0
    retries: int = 0
    errors: int = 0
    bans: int = 0
    disallowed: int = 0
    sitemaps: int = 0
    products_skipped: int = 0
    images_skipped: int = 0
    images_kept: int = 0  # failed this time; the last good copy stands
    dead_skipped: int = 0  # dead URLs not requested (an incremental pass)
    by_status: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    unmapped_labels: Counter = field(default_factory=Counter)
    first_request: float | None = None
    last_request: float | None = None


def short(exc: BaseException) -> str:
    """One line naming an exception (SQLAlchemy's messages span several)."""
    text = str(getattr(exc, "orig", None) or exc).split("(Background on this error")[0]
    return f"{type(exc).__name__}: {' '.join(text.split())}"[:300]


def is_storage_error(exc: BaseException) -> bool:
    """Disk full or read-only, in the image store (OSError) or the state database."""
    import errno

    import sqlalchemy.exc

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    text = str(exc).lower()
    return isinstance(exc, sqlalchemy.exc.OperationalError) and (
        "disk is full" in text or "disk i/o error" in text or "readonly" in text)


def normalize(url: str) -> str:
    """Drop the fragment and lowercase scheme and host."""
    p = urlsplit(url)
    return urlunsplit((p.scheme.lower(), p.netloc.lower(), p.path or "/", p.query, ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def validators(old: dict | None) -> dict[str, str]:
    """Conditional-request headers from a stored page row (only when its extraction is kept)."""
    headers: dict[str, str] = {}
    if old and old.get("extracted"):
        if old.get("etag"):
            headers["If-None-Match"] = old["etag"]
        if old.get("last_modified"):
            headers["If-Modified-Since"] = old["last_modified"]
    return headers


def next_page_number(url: str, param: str, start: int, max_pages: int) -> str | None:
    """``url`` with query parameter ``param`` one higher (``start`` when absent)."""
    from urllib.parse import parse_qsl, urlencode

    p = urlsplit(url)
    query = parse_qsl(p.query, keep_blank_values=True)
    current = start
    for k, v in query:
        if k == param:
            try:
                current = int(v)
            except ValueError:
                return None
    if current + 1 - start >= max_pages:
        logger.warning("%s: paginate.max_pages (%d) reached", url, max_pages)
        return None
    query = [(k, v) for k, v in query if k != param] + [(param, str(current + 1))]
    return urlunsplit((p.scheme, p.netloc, p.path, urlencode(query), ""))


def parse_sitemap(body: bytes, max_bytes: int) -> dict:
    """``{"sitemaps": [loc…], "urls": [(loc, lastmod|None)…]}`` of a sitemap or sitemap index.

    Gzipped sitemaps are unpacked up to ``max_bytes``; entities are never resolved (lxml
    through parsel, ``resolve_entities=False``).

    Raises:
        ValueError: Not a sitemap (HTML, broken XML, a gzip bomb).
    """
    import gzip
    import zlib

    if body[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = d.decompress(body, max_bytes)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise ValueError(f"broken gzip: {exc}") from None
        if d.unconsumed_tail:
            raise ValueError(f"unpacks to more than max_bytes ({max_bytes})")
    text = body.decode("utf-8", "replace").lstrip("\ufeff \r\n\t")
    if not text.startswith("<?xml") and not re.match(r"<(\w+:)?(urlset|sitemapindex)\b", text):
        raise ValueError("not a sitemap (no urlset or sitemapindex element)")
    sel = Selector(text=text, type="xml")
    sel.remove_namespaces()
    if not sel.xpath("/urlset|/sitemapindex"):
        raise ValueError("not a sitemap (no urlset or sitemapindex element)")
    sitemaps = [u.strip() for u in sel.xpath("/sitemapindex/sitemap/loc/text()").getall() if u.strip()]
    urls = []
    for node in sel.xpath("/urlset/url"):
        loc = (node.xpath("loc/text()").get() or "").strip()
        if loc:
            lastmod = (node.xpath("lastmod/text()").get() or "").strip() or None
            urls.append((loc, lastmod))
    return {"sitemaps": sitemaps, "urls": urls}


class Crawler:
    """Crawl one site into the state database and the blob store.

    Args:
        site: The site adapter.
        params: Scrape parameters.
        state: Crawl state (one site).
        store: Content-addressed blob store.
    """

    def __init__(self, site: SiteConfig, params: ScrapeParams, state: CrawlState,
                 store: BlobStore, full_pass: bool = True) -> None:
        self.site = site
        # a full pass re-checks every page and image (conditional GETs); otherwise a product
        # whose sitemap lastmod is unchanged, or whose page answers 304, keeps its images
        # without a request
        self.full_pass = full_pass
        self.tokens: dict[str, str | None] = {}  # product URL → its sitemap lastmod
        self.p = params
        self.state = state
        self.store = store
        self.c = Counters()
        self.hosts: dict[str, tuple[Robots, HostLimiter, float | None]] = {}
        self.host_lock = asyncio.Lock()
        self.stop_reason: str | None = None
        self.stop_status = "stopped"
        self.consecutive_403 = 0
        self.products_seen = 0
        self.failed_pages = 0
        # URLs that failed before (dead or not), and whether the discovery sitemap is dead
        self.unreachable: dict[str, dict] = {}
        self.sitemap_dead = False
        # catalog pages robots.txt now keeps us from (known from earlier runs, or the start)
        self.blind_pages = 0
        self.start_disallowed = 0
        self.rng = random.Random()
        self.bar: tqdm | None = None
        base = urlsplit(site.base_url)
        self.base_host = base.netloc.lower()
        # pages live on the store's host; images may also come from the CDN hosts it names
        self.image_hosts = {self.base_host, *(h.lower() for h in site.allowed_hosts)}

    # ------------------------------------------------------------------ politeness
    async def host(self, url: str) -> tuple[Robots, HostLimiter, float | None]:
        netloc = urlsplit(url).netloc.lower()
        async with self.host_lock:
            if netloc not in self.hosts:
                robots, delay = await self._robots(url)
                if delay:
                    rate = min(self.p.max_rate, self.p.rate_safety / delay)
                else:
                    rate = min(self.p.max_rate, self.p.default_rate)
                limiter = HostLimiter(rate, self.p.jitter)
                self.hosts[netloc] = (robots, limiter, delay)
                logger.info("%s: crawl-delay %s → %.2f requests/s", netloc,
                            f"{delay:g}s" if delay else "none", rate)
            return self.hosts[netloc]

    async def _robots(self, url: str) -> tuple[Robots, float | None]:
        if not self.p.respect_robots:
            return Robots(allow_all=True), None
        p = urlsplit(url)
        robots_url = urlunsplit((p.scheme, p.netloc, "/robots.txt", "", ""))
        limiter = HostLimiter(min(self.p.default_rate, self.p.max_rate), 0.0)
        res = await self._request(robots_url, limiter, {}, page=True, allow_empty=True)
        hops = 0
        while res.status in (301, 302, 303, 307, 308) and hops < MAX_REDIRECTS:
            # RFC 9309 follows redirects; gemcurate only within the host it is about
            target = normalize(urljoin(robots_url, res.headers.get("Location") or ""))
            if urlsplit(target).netloc.lower() != p.netloc.lower():
                break
            hops += 1
            res = await self._request(target, limiter, {}, page=True, allow_empty=True)
        if res.status == 200:
            robots = Robots.parse(res.body.decode("utf-8", "replace"))
            return robots, robots.crawl_delay(self.p.user_agent)
        if res.status is not None and 400 <= res.status < 500:
            return Robots(allow_all=True), None  # RFC 9309: unavailable → allow
        self._stop(f"robots.txt of {p.netloc} is unreachable ({res.error or res.status}); "
                   "RFC 9309 says to assume full disallow. Rerun later.", "stopped")
        raise Stop(self.stop_reason)

    # ------------------------------------------------------------------ HTTP
    async def _fetch(self, url: str, limiter: HostLimiter, headers: dict, kind: str) -> Fetched:
        """GET ``url``, following redirects only within the crawl's scope.

        Every hop is checked like a link: a page may move only on the store's host, an
        image to the store's host or a CDN host the site names; robots.txt and the rate
        limit of the hop's host apply; a loop or more than :data:`MAX_REDIRECTS` hops is a
        failure, never retried.
        """
        seen = {url}
        res = await self._request(url, limiter, headers, page=kind != "image")
        while res.status is not None and 300 <= res.status < 400 and res.status != 304:
            location = res.headers.get("Location")
            if not location:
                return Fetched(res.status, res.headers, b"", f"HTTP {res.status} without Location",
                               res.attempts, permanent=True)
            target = normalize(urljoin(url, location))
            if not self._in_scope(target, kind):
                return Fetched(res.status, res.headers, b"",
                               f"redirect to another host refused: {target[:200]}", res.attempts,
                               permanent=True)
            if target in seen or len(seen) > MAX_REDIRECTS:
                return Fetched(res.status, res.headers, b"",
                               f"redirect loop or more than {MAX_REDIRECTS} redirects at {target[:200]}",
                               res.attempts, permanent=True)
            seen.add(target)
            robots, hop_limiter, _ = await self.host(target)
            if not robots.allowed(target, self.p.user_agent):
                return Fetched(res.status, res.headers, b"",
                               f"redirect into a path robots.txt disallows: {target[:200]}", res.attempts,
                               permanent=True)
            url = target
            res = await self._request(url, hop_limiter, headers, page=kind != "image")
        res.url = url
        return res

    async def _request(self, url: str, limiter: HostLimiter, headers: dict,
                       page: bool, allow_empty: bool = False) -> Fetched:
        """One URL, no redirects followed: GET with politeness, backoff and ban detection.

        Each try is :meth:`_get_once` (the body limit); what its outcome means is decided by
        one policy each: an answer (:meth:`_answered_with`), a 429 (:meth:`_on_429`), a 403
        (:meth:`_on_403`), and the retry of what is transient.
        """
        attempts = n429 = 0
        while True:
            if self.stop_reason:
                raise Stop(self.stop_reason)
            await limiter.acquire()
            if self.stop_reason:
                raise Stop(self.stop_reason)
            attempts += 1
            status, hdrs, body, error, too_large = await self._get_once(url, headers)
            if too_large:
                return Fetched(200, hdrs, b"", f"too_large_bytes: {too_large}", attempts, permanent=True)
            done, status, error = self._answered_with(status, body, error, allow_empty)
            if done:
                return Fetched(status, hdrs, body, None, attempts)
            ra = parse_retry_after(hdrs.get("Retry-After"))
            if status == 429:
                n429 += 1
                if self._on_429(url, limiter, ra, n429):
                    continue
                return Fetched(429, hdrs, b"", "rate limited too often", attempts)
            if status == 403:
                self._on_403(url, ra, body)  # raises Stop on a ban
                return Fetched(403, hdrs, body, "HTTP 403", attempts, permanent=True)
            transient = status is None or status in (408, 425, 500, 502, 503, 504)
            if not transient:
                return Fetched(status, hdrs, body, f"HTTP {status}", attempts,
                               permanent=400 <= status < 500)
            if attempts > self.p.max_retries:
                self.c.errors += 1
                return Fetched(status, hdrs, body, error or f"HTTP {status}", attempts)
            self.c.retries += 1
            delay = max(ra or 0.0, self._backoff(attempts))
            logger.debug("retry %d of %s in %.1fs (%s)", attempts, url, delay, error or status)
            # back off this request only: one failing URL must not stall the whole host
            await asyncio.sleep(delay)

    async def _get_once(self, url: str, headers: dict
                        ) -> tuple[int | None, CIMultiDict, bytes, str | None, str | None]:
        """One GET, its 200 body streamed against ``max_bytes``.

        Returns:
            ``(status, headers, body, error, too_large)``: status None when no whole answer
            came (a reset, a timeout, a body that broke off: retried like a failed connect);
            ``too_large`` says why a body was cut off (never retried).
        """
        self.c.requests += 1
        t = time.time()
        self.c.first_request = self.c.first_request or t
        self.c.last_request = t
        status, hdrs, body, error, too_large = None, CIMultiDict(), b"", None, None
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as r:
                code, got = r.status, r.headers.copy()
                if code == 200:
                    body = await self._read_body(r)
                else:
                    with contextlib.suppress(TimeoutError, aiohttp.ClientError, ConnectionError):
                        body = await r.content.read(4096)
                # the outcome is known only once the whole body is in
                status, hdrs = code, got
        except TooLarge as exc:
            too_large = str(exc)
        except BrokenBody as exc:
            error = str(exc)  # a transient failure: retried like a reset before the headers
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            error = f"{type(exc).__name__}: {exc}".strip(": ")
        self.c.last_request = time.time()
        if status is not None:
            self.c.by_status[status] += 1
        return status, hdrs, body, error, too_large

    async def _read_body(self, r: aiohttp.ClientResponse) -> bytes:
        """The whole body, or :class:`TooLarge` past ``max_bytes`` (declared or counted after
        decompression), or :class:`BrokenBody` when the connection ends early."""
        declared = r.content_length
        if declared is not None and declared > self.p.max_bytes:
            raise TooLarge(f"Content-Length {declared} > max_bytes")
        chunks, n = [], 0
        try:
            async for chunk in r.content.iter_chunked(1 << 16):
                n += len(chunk)
                if n > self.p.max_bytes:
                    raise TooLarge(f"body over max_bytes {self.p.max_bytes}")
                chunks.append(chunk)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            # aiohttp raises here when a connection closes before the Content-Length (or
            # the last chunk) arrived, and on timeouts
            raise BrokenBody(f"body broke off after {n} bytes ({short(exc)})") from exc
        return b"".join(chunks)

    def _answered_with(self, status: int | None, body: bytes, error: str | None,
                       allow_empty: bool) -> tuple[bool, int | None, str | None]:
        """Whether a try is an answer to return (200, 304, a redirect); an empty 200 is not.

        Returns:
            ``(done, status, error)`` (an empty body turns into a failed try).
        """
        if status in (200, 304) or (status is not None and 300 <= status < 400):
            self.consecutive_403 = 0
            if status == 200 and not body and not allow_empty:
                # no page or image is empty: a store that sends nothing has shown nothing
                # (not a category without products, not a file to keep, with an ETag that
                # would revalidate it for good); retried like a reset
                return False, None, "empty body"
            return True, status, error
        return False, status, error

    def _on_429(self, url: str, limiter: HostLimiter, retry_after: float | None, n429: int) -> bool:
        """The rate-limit policy: pause the host and slow down; False when tried too often.

        Raises:
            Stop: The store asks to wait longer than ``max_retry_after_s``.
        """
        self.c.rate_limited += 1
        wait = retry_after if retry_after is not None else self._backoff(n429)
        if wait > self.p.max_retry_after_s:
            self._stop(f"{urlsplit(url).netloc} asks to wait {wait:.0f}s (Retry-After), "
                       f"more than scrape.max_retry_after_s; state saved, rerun later", "stopped")
            raise Stop(self.stop_reason)
        limiter.pause(wait)
        limiter.slow_down()
        logger.info("429 on %s: pausing %.1fs, rate now %.2f/s", url, wait, limiter.rate)
        return n429 <= 4 * (self.p.max_retries + 1)

    def _on_403(self, url: str, retry_after: float | None, body: bytes) -> None:
        """The ban policy: a 403 with Retry-After, one that says "ban", or the third in a row
        stops the whole crawl at once (state saved); any other 403 is that URL's answer.

        Raises:
            Stop: Banned.
        """
        self.consecutive_403 += 1
        text = body.decode("utf-8", "replace").lower()
        if retry_after is not None or "ban" in text or self.consecutive_403 >= 3:
            self.c.bans += 1
            self._stop(f"banned by {urlsplit(url).netloc} (HTTP 403: {text.strip()[:80]!r}); "
                       "stopped at once, state saved, rerun later to resume", "banned")
            raise Stop(self.stop_reason)

    def _backoff(self, attempt: int) -> float:
        base = min(self.p.backoff_max_s, self.p.backoff_base_s * 2 ** (attempt - 1))
        return base * self.rng.uniform(0.5, 1.5)

    def _stop(self, reason: str, status: str) -> None:
        if not self.stop_reason:
            self.stop_reason, self.stop_status = reason, status
            logger.warning("stopping: %s", reason)

    # ------------------------------------------------------------------ items
    def _in_scope(self, url: str, kind: str) -> bool:
        """Pages on the store's host only; images there or on a CDN host the site names."""
        p = urlsplit(url)
        hosts = self.image_hosts if kind == "image" else {self.base_host}
        return p.scheme in ("http", "https") and p.netloc.lower() in hosts

    def _abs(self, base: str, links: list[str], kind: str) -> list[str]:
        out = []
        for link in links:
            u = normalize(urljoin(base, link))
            if self._in_scope(u, kind):
                out.append(u)
        return out

    async def process(self, run_id: int, url: str, kind: str, payload: dict | None) -> list:
        robots, limiter, _ = await self.host(url)
        if not robots.allowed(url, self.p.user_agent):
            self.c.disallowed += 1
            if kind == "image":
                self.state.save_image(run_id, url, self._img_meta(payload),
                                      {"excluded_reason": "disallowed_by_robots",
                                       "detail": "robots.txt disallows this URL"}, 0)
            elif kind == "home" or (kind in PAGE_KINDS and self.state.page(url) is not None):
                # a start URL, or a page an earlier crawl read: what it lists is unseen now,
                # not gone. Dead (a request cannot change robots.txt), so what it listed
                # keeps its last known rows; a link never read before (cart, search) is
                # merely skipped
                self.blind_pages += 1
                self.start_disallowed += kind == "home"
                self._failed(run_id, url, kind, ROBOTS_REFUSED, True)
                self.state.mark(run_id, url, "dead", ROBOTS_REFUSED)
            else:
                self.state.mark(run_id, url, "done", "disallowed by robots.txt")
            return []
        if self._skip_dead(run_id, url, kind, payload):
            return []
        if kind == "image":
            await self._image(run_id, url, payload or {}, limiter)
            return []
        return await self._page(run_id, url, kind, payload or {}, limiter)

    # ------------------------------------------------------------------ dead links
    def _failed(self, run_id: int, url: str, kind: str, detail: str, permanent: bool) -> bool:
        """Count a URL's failed pass; whether it is dead now (see ``scrape.give_up_after``)."""
        dead = self.state.record_failure(run_id, url, kind, detail, permanent, self.p.give_up_after)
        self.unreachable[url] = {"dead": dead, "detail": detail}
        if dead:
            logger.warning("%s %s is dead (%s)%s", kind, url, detail,
                           "" if kind == "image" else ": what it listed keeps its last known rows")
        return dead

    def _answered(self, url: str) -> None:
        """``url`` was read: whatever failed before is forgotten."""
        if self.unreachable.pop(url, None) is not None:
            self.state.reachable(url)

    def _skip_dead(self, run_id: int, url: str, kind: str, payload: dict | None) -> bool:
        """An incremental pass sends no request to a dead URL (a full pass retries it)."""
        row = self.unreachable.get(url)
        if self.full_pass or not row or not row["dead"] or row["detail"] == ROBOTS_REFUSED:
            return False
        self.c.dead_skipped += 1
        self.state.still_dead(run_id, url)
        detail = f"dead ({row['detail']}); retried at the next full pass"
        if kind == "image":
            old = self.state.image(url)
            values = {} if old else {"excluded_reason": "http_error", "detail": detail,
                                     "checked": True}
            self.state.save_image(run_id, url, self._img_meta(payload), values, 0)
        else:
            self.state.mark(run_id, url, "dead", detail)
        return True

    # long: one page's fetch, extraction and scheduling of what it links, the order a crawl needs
    async def _page(self, run_id: int, url: str, kind: str, payload: dict,
                    limiter: HostLimiter) -> list:
        old = self.state.page(url)
        headers = validators(old)
        token = payload.get("token") if "token" in payload else self.tokens.get(url)
        if kind == "product" and not self.full_pass and old and old.get("extracted") and token:
            before = json.loads(old["extracted"])
            if before.get("token") == token and self._carry(run_id, url, before):
                self.state.mark(run_id, url, "done", "unchanged: same sitemap lastmod")
                return []
        res = await self._fetch(url, limiter, headers, kind)
        if res.status == 304 and old:
            self.c.pages_304 += 1
            extracted = json.loads(old["extracted"])
            extracted["token"] = token
            self.state.save_page(run_id, url, kind, None, None, extracted, res.attempts, False)
            if kind == "product" and not self.full_pass and self._carry(run_id, url, extracted):
                # the page did not change, so neither did its images (the store's validators
                # cover them); a periodic full pass re-checks
                return []
        elif res.status == 200:
            self.c.pages += 1
            self.c.bytes += len(res.body)
            # relative links resolve against where the page really is (after redirects)
            extracted = self._extract(res.url or url, kind, res.body, res.headers.get("Content-Type"))
            extracted["token"] = token
            self.state.save_page(run_id, url, kind, res.headers.get("ETag"),
                                 res.headers.get("Last-Modified"), extracted, res.attempts, True)
        else:
            detail = res.error or f"HTTP {res.status}"
            dead = self._failed(run_id, url, kind, detail, res.permanent)
            if not dead:
                self.failed_pages += 1
                logger.warning("page %s failed: %s", url, detail)
            self.state.mark(run_id, url, "dead" if dead else "failed", detail, res.attempts)
            return []
        self._answered(url)
        children: list[tuple[str, str, dict | None]] = []
        for u in extracted.get("categories", []):
            if self.p.categories and not any(c in urlsplit(u).path for c in self.p.categories):
                continue
            children.append((u, "category", None))
        for u in extracted.get("next", []):
            children.append((u, "category", None))
        for u in extracted.get("products", []):
            if self.p.max_products is not None and self.products_seen >= self.p.max_products:
                break
            self.products_seen += 1
            children.append((u, "product", {"token": self.tokens.get(u)} if u in self.tokens else None))
        prod = extracted.get("product")
        if prod:
            if prod.get("unmapped"):
                self.c.unmapped_labels[prod["unmapped"]] += 1
            self.state.save_product(run_id, prod["product_id"], url, prod["label"], prod["attrs"])
            if prod.get("unmapped") and self.site.unmapped_labels == "exclude":
                # listed in the manifest as excluded, never downloaded
                for i, u in enumerate(prod["images"]):
                    self.state.save_image(run_id, u, {
                        "product_id": prod["product_id"], "product_url": url, "label": prod["label"],
                        "image_index": i}, {"excluded_reason": "unmapped_label", "detail":
                                            f"store label {prod['unmapped']!r} is not in label_map "
                                            "(unmapped_labels: exclude)"}, 0)
                return children
            for i, u in enumerate(prod["images"]):
                children.append((u, "image", {"product_id": prod["product_id"], "product_url": url,
                                              "label": prod["label"], "image_index": i}))
        return children

    def _extract(self, url: str, kind: str, body: bytes, content_type: str | None = None) -> dict:
        doc = Doc(body, content_type, url)
        s = self.site
        out: dict = {}
        if kind == "home":
            out["categories"] = self._abs(url, extract(doc, s.category_links), "category")
        if kind in ("home", "category"):
            out["products"] = self._abs(url, extract(doc, s.product_links), "product")
            out["next"] = self._abs(url, extract(doc, s.next_page), "category")
            if kind == "category" and s.paginate and out["products"]:
                nxt = next_page_number(url, s.paginate.param, s.paginate.start, s.paginate.max_pages)
                if nxt:
                    out["next"].append(nxt)
        if kind == "product":
            ps = s.product
            pid = extract_first(doc, ps.id, ps.id_pattern) or \
                urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
            store_label = extract_first(doc, ps.label, ps.label_pattern)
            if store_label is None:
                logger.warning("no label on %s; product skipped (check product.label)", url)
                return out
            label, parent, mapped = s.target(store_label)
            attrs = {k: extract_first(doc, v) for k, v in ps.attributes.items()}
            if mapped and label != store_label:
                attrs["store_label"] = store_label
            if parent:
                attrs["parent_label"] = parent
            for name, value in (("id", pid), ("label", label)):
                why = text_problem(value)
                if why or len(value) > 128:
                    self.c.rejected[f"unsafe_{name}"] += 1
                    logger.warning("product %s skipped: its %s %r %s", url, name, value[:60],
                                   why or "is longer than 128 characters")
                    return out
            imgs = extract(doc, ps.images)
            for rw in s.image_url_rewrite:
                imgs = [re.sub(rw.pattern, rw.replace, u) for u in imgs]
            out["product"] = {"product_id": pid, "label": label,
                              "images": list(dict.fromkeys(self._abs(url, imgs, "image"))),
                              "attrs": {k: v for k, v in attrs.items() if v is not None}}
            if s.label_map and not mapped:
                out["product"]["unmapped"] = store_label
        return out

    def _carry(self, run_id: int, url: str, extracted: dict) -> bool:
        """Keep a product that did not change, and its images, without a request.

        Only when every image it had is on disk with a final verdict; an image that failed
        for a reason a new request could change means the page is fetched as usual.
        """
        prod = extracted.get("product")
        if not prod:
            return False
        rows = self.state.product_images(url)
        if not rows or len(rows) != len(prod.get("images", [])):
            return False
        for r in rows:
            if r["excluded_reason"] in RETRY_REASONS or not r["path"] or not r["checked"] \
                    or not self.store.exists(r["path"]):
                return False
        self.state.carry_product(run_id, url, prod["product_id"], [r["url"] for r in rows])
        self.c.products_skipped += 1
        self.c.images_skipped += len(rows)
        return True

    # ------------------------------------------------------------------ sitemaps
    async def read_sitemaps(self, run_id: int) -> None:
        """Read the store's sitemap(s): product URLs and their lastmod (``self.tokens``).

        With ``sitemap.discover`` every product it lists joins the frontier. A sitemap that
        fails makes the crawl incomplete when it is the discovery source (nothing is then
        marked removed); otherwise its products are simply checked the usual way.
        """
        sm = self.site.sitemap
        if sm is None:
            return
        robots, _, _ = await self.host(self.site.base_url)
        roots = list(sm.url) or list(robots.sitemaps) or ["/sitemap.xml"]
        todo = [u for u in self._abs(self.site.base_url, roots, "page")]
        seen: set[str] = set()
        pattern = re.compile(sm.products)
        found: list[tuple[str, str | None]] = []
        while todo:
            url = todo.pop(0)
            if url in seen:
                logger.warning("sitemap %s is listed again (a loop); read once", url)
                continue
            if len(seen) >= sm.max_sitemaps:
                logger.warning("more than sitemap.max_sitemaps (%d) sitemaps; the rest is ignored",
                               sm.max_sitemaps)
                break
            seen.add(url)
            got = await self._sitemap(url)
            if got is None:
                continue
            self.c.sitemaps += 1
            todo += [u for u in got["sitemaps"] if u not in seen]
            for loc, lastmod in got["urls"]:
                m = pattern.search(loc)
                if not m:
                    continue
                if sm.product_url:
                    value = m.group(1) if m.groups() else loc
                    loc = normalize(urljoin(loc, sm.product_url.replace("{}", value)))
                if self._in_scope(loc, "product"):
                    found.append((loc, lastmod))
        for loc, lastmod in found:
            self.tokens[loc] = lastmod
        logger.info("sitemaps: %d read, %d product URLs", len(seen), len(found))
        if sm.discover:
            items = []
            for loc, lastmod in found:
                if self.p.max_products is not None and self.products_seen >= self.p.max_products:
                    break
                self.products_seen += 1
                items.append((loc, "product", {"token": lastmod}))
            self.state.add(run_id, items)

    async def _sitemap(self, url: str) -> dict | None:
        """One sitemap (conditional GET; the stored copy answers a 304), or ``None``."""
        robots, limiter, _ = await self.host(url)
        if not robots.allowed(url, self.p.user_agent):
            logger.warning("robots.txt disallows the sitemap %s", url)
            return self._sitemap_failed(url, "robots.txt disallows the sitemap", True)
        old = self.state.page(url)
        headers = validators(old)
        res = await self._fetch(url, limiter, headers, "sitemap")
        if res.status == 304 and old:
            self.c.pages_304 += 1
            self._answered(url)
            return json.loads(old["extracted"])
        if res.status != 200:
            logger.warning("sitemap %s failed: %s", url, res.error or res.status)
            return self._sitemap_failed(url, res.error or f"HTTP {res.status}", res.permanent)
        self.c.pages += 1
        self.c.bytes += len(res.body)
        try:
            got = parse_sitemap(res.body, self.p.max_bytes)
        except ValueError as exc:
            logger.warning("sitemap %s: %s", url, exc)
            return self._sitemap_failed(url, f"not a usable sitemap: {exc}", False)
        self._answered(url)
        base = res.url or url
        got = {"sitemaps": self._abs(base, got["sitemaps"], "page"),
               "urls": [(normalize(urljoin(base, u)), lm) for u, lm in got["urls"]]}
        self.state.save_page(0, url, "sitemap", res.headers.get("ETag"),
                             res.headers.get("Last-Modified"), got, res.attempts, True)
        return got

    def _sitemap_failed(self, url: str, detail: str, permanent: bool) -> None:
        """A sitemap that is the discovery source and cannot be read: failed, or dead.

        Failed makes the crawl incomplete (nothing is marked removed, a rerun retries);
        dead lets it complete with every product it knew kept as it was.
        """
        if self.site.sitemap is None or not self.site.sitemap.discover:
            return None
        if self._failed(self.run_id, url, "sitemap", detail, permanent):
            self.sitemap_dead = True
        else:
            self.failed_pages += 1
        return None

    @staticmethod
    def _img_meta(payload: dict | None) -> dict:
        p = payload or {}
        return {"product_id": p.get("product_id", "?"), "product_url": p.get("product_url", ""),
                "label": p.get("label", "?"), "image_index": int(p.get("image_index", 0))}

    async def _image(self, run_id: int, url: str, payload: dict, limiter: HostLimiter) -> None:
        meta = self._img_meta(payload)
        old = self.state.image(url)
        headers = {}
        if old and old.get("path") and self.store.exists(old["path"]):
            if old.get("etag"):
                headers["If-None-Match"] = old["etag"]
            if old.get("last_modified"):
                headers["If-Modified-Since"] = old["last_modified"]
        res = await self._fetch(url, limiter, headers, "image")
        if res.status == 304 and old:
            self.c.images_304 += 1
            self._answered(url)
            self.state.save_image(run_id, url, meta, {}, res.attempts)
            return
        if res.status != 200 or res.error:
            detail = res.error or f"HTTP {res.status}"
            self._failed(run_id, url, "image", detail, res.permanent)
            if old and old.get("path") and old.get("checked") and old.get("sha256") \
                    and old.get("excluded_reason") is None and self.store.exists(old["path"]):
                # what the store sent before stands: an image that cannot be fetched now is
                # neither dropped nor replaced (the failure is listed in the summary)
                self.c.images_kept += 1
                self.state.save_image(run_id, url, meta, {}, res.attempts)
                return
            reason = "too_large_bytes" if res.error and res.error.startswith("too_large") \
                else "http_error"
            self.c.rejected[reason] += 1
            self.state.save_image(run_id, url, meta, {
                "excluded_reason": reason, "checked": True,
                "detail": res.error or f"HTTP {res.status}"}, res.attempts)
            return
        self._answered(url)
        data = res.body
        sha = sha256_hex(data)
        fmt = sniff(data)
        _, rel = self.store.put(data, EXT.get(fmt or "", "bin"), sha)
        ctype = res.headers.get("Content-Type")
        self.c.images += 1
        self.c.bytes += len(data)
        # commit the download before checking it: a kill from here on loses nothing
        self.state.save_image(run_id, url, meta, {
            "sha256": sha, "path": rel, "etag": res.headers.get("ETag"),
            "last_modified": res.headers.get("Last-Modified"), "content_type": ctype,
            "n_bytes": len(data), "fetched_at": now(), "checked": False,
            "excluded_reason": None, "detail": None}, res.attempts)
        await self._check(url, data, ctype)

    async def _check(self, url: str, data: bytes, ctype: str | None) -> None:
        verdict = await asyncio.to_thread(check_image, data, ctype, self.p)
        if not verdict.ok:
            self.c.rejected[verdict.reason] += 1
            logger.info("rejected %s: %s", url, verdict.detail)
        self.state.set_check(url, {"width": verdict.width, "height": verdict.height,
                                   "format": verdict.format, "excluded_reason": verdict.reason,
                                   "detail": None if verdict.ok else verdict.detail})

    def _fail(self, run_id: int, url: str, kind: str, exc: Exception) -> None:
        """An error no retry fixes: record the URL as failed; stop when the state cannot be written.

        Out of disk space (or any failure to write the crawl state or the image store)
        stops the crawl with a message instead of failing every URL after it; what was
        committed before stays, and a rerun resumes there.
        """
        if is_storage_error(exc):
            self._stop(f"cannot write the crawl state or the image store ({short(exc)}); "
                       "is the disk full? Free space and rerun to resume (state saved)", "stopped")
            return
        logger.exception("unexpected error on %s", url)
        try:
            self.state.mark(run_id, url, "failed", f"internal error: {short(exc)}")
        except Exception as again:  # the state itself cannot be written
            self._stop(f"cannot write the crawl state ({short(again)}); is the disk full? "
                       "Free space and rerun to resume", "stopped")
            return
        if kind != "image":
            self.failed_pages += 1

    # ------------------------------------------------------------------ main loop
    # long: the crawl loop: workers, queue, stop conditions and their accounting share one set of
    # local counters
    async def crawl(self, run_id: int, resumed: bool) -> None:
        """Run the frontier of ``run_id`` to exhaustion or until stopped."""
        self.run_id = run_id
        self.unreachable = {u: {"dead": bool(r["dead"]), "detail": r["detail"]}
                            for u, r in self.state.unreachable_urls().items()}
        timeout = aiohttp.ClientTimeout(total=self.p.timeout_s)
        conn = aiohttp.TCPConnector(limit=self.p.concurrency, ttl_dns_cache=300)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop, f"interrupted by {sig.name}; state saved, "
                                        "rerun to resume", "stopped")
        async with aiohttp.ClientSession(timeout=timeout, connector=conn, headers={
                "User-Agent": self.p.user_agent, "Accept-Encoding": "gzip, deflate"}) as session:
            self.session = session
            for row in self.state.unchecked():  # downloaded before a kill, not yet checked
                with contextlib.suppress(FileNotFoundError):
                    await self._check(row["url"], self.store.get(row["path"]), row["content_type"])
            if not resumed:
                starts = [(normalize(urljoin(self.site.base_url, u)), "home", None)
                          for u in self.site.start_urls]
                self.state.add(run_id, starts)
            await self.host(self.site.base_url)
            await self.read_sitemaps(run_id)
            queue: asyncio.Queue = asyncio.Queue()
            items = self.state.pending(run_id)
            for it in items:
                queue.put_nowait(it)
            done_before = sum(v for k, v in self.state.frontier_counts(run_id).items() if k == "done")
            self.bar = tqdm(total=len(items) + done_before, initial=done_before, unit="url",
                            desc=f"scrape {self.site.name}", disable=not self.p.progress,
                            dynamic_ncols=True, mininterval=1.0)

            async def worker() -> None:
                while True:
                    _seq, url, kind, payload = await queue.get()
                    try:
                        if not self.stop_reason:
                            children = await self.process(run_id, url, kind, payload)
                            new = self.state.add(run_id, children)
                            for it in new:
                                queue.put_nowait(it)
                            if self.bar is not None:
                                self.bar.total += len(new)
                                self.bar.update(1)
                    except Stop:
                        pass
                    except Exception as exc:
                        self._fail(run_id, url, kind, exc)
                    finally:
                        queue.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(self.p.concurrency)]
            try:
                while True:
                    joiner = asyncio.ensure_future(queue.join())
                    while not joiner.done():
                        await asyncio.wait([joiner], timeout=0.2)
                        if self.stop_reason:
                            break
                        if all(w.done() for w in workers):  # never wait on workers that died
                            self._stop("every crawl worker ended unexpectedly; state saved, rerun "
                                       "to resume", "stopped")
                            break
                    if self.stop_reason or joiner.done():
                        joiner.cancel()
                        break
            finally:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                self.bar.close()

