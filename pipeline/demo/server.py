"""The demo storefront: a real HTTP server that behaves like an online gem store.

It serves a :class:`~pipeline.demo.catalog.Catalog` as home → categories →
paginated listings → product pages → CDN image URLs, and does to scrapers what
real stores do:

* a per-client token bucket answered with ``429`` + ``Retry-After``; a client that
  keeps sending during its Retry-After window collects strikes and is banned
  (``403``) for a while;
* ``robots.txt`` with ``Crawl-delay`` (the rate limit) and ``Disallow`` paths that
  pages link to;
* injected faults at rate ``faults``: slow answers, ``503`` and connection resets;
* ``ETag`` / ``Last-Modified`` answered with ``304``;
* ``GET /_stats``: JSON counters, the way tests and benchmarks see what a scraper did.

Example:
    $ gemcurate store serve --port 8000 --seed 1 --rate-limit 20
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import math
import os
import random
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

from pipeline.core import atomic
from pipeline.demo.catalog import BASE_DATE, Catalog, CatalogOptions, ImageEntry
from pipeline.demo.layouts import ImageRef, Page, ground_truth, make_layout

logger = logging.getLogger(__name__)

DISALLOWED = ("/cart", "/account", "/search")


@dataclass
class ServerOptions:
    """Behaviour of the storefront (the ``store serve`` flags)."""

    rate_limit: float = 20.0
    burst: int = 5
    faults: float = 0.02
    ban_strikes: int = 5
    ban_seconds: float = 120.0
    page_size: int = 12
    slow_s: tuple[float, float] = (0.5, 2.5)
    cache_dir: str | None = None
    fault_seed: int = 0
    workers: int = 2
    layout: str = "demo"  # demo, shopify, woocommerce, magento (see layouts.py)
    # links that never answer (demo layout): the first category lists this many deleted
    # products (404), and as many products show one more image that always answers 500
    dead_links: int = 0


@dataclass
class _Client:
    tokens: float
    stamp: float
    penalty_until: float = 0.0
    strikes: int = 0
    banned_until: float = 0.0


@dataclass
class Stats:
    """Counters behind ``GET /_stats``."""

    started: float = field(default_factory=time.time)
    by_status: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    image_200: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    bans: int = 0
    banned_requests: int = 0
    robots_violations: int = 0
    first_request: float | None = None
    last_request: float | None = None
    clients: set = field(default_factory=set)

    def as_dict(self) -> dict:
        hist = Counter(self.image_200.values())
        span = (self.last_request or 0) - (self.first_request or 0)
        total = sum(self.by_status.values())
        return {
            "requests": total,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_kind": dict(sorted(self.by_kind.items())),
            "faults": dict(self.faults),
            "rate_limited": self.rate_limited,
            "bans": self.bans,
            "banned_requests": self.banned_requests,
            "robots_violations": self.robots_violations,
            "not_modified": self.by_status.get(304, 0),
            "images_served": sum(self.image_200.values()),
            "image_urls_served": len(self.image_200),
            "images_served_per_url_count": {str(k): v for k, v in sorted(hist.items())},
            "image_urls_served_more_than_once": sorted(u for u, c in self.image_200.items() if c > 1),
            "first_request_at": self.first_request,
            "last_request_at": self.last_request,
            "request_rate": (total - 1) / span if span > 0 else 0.0,
            "clients": len(self.clients),
            "uptime_s": time.time() - self.started,
        }


class Storefront:
    """The aiohttp application around a catalog."""

    def __init__(self, catalog: Catalog, options: ServerOptions | None = None) -> None:
        self.catalog = catalog
        self.opt = options or ServerOptions()
        self.stats = Stats()
        self.clients: dict[str, _Client] = {}
        self.random = random.Random(self.opt.fault_seed)
        self.pool = ThreadPoolExecutor(max_workers=self.opt.workers, thread_name_prefix="render")
        self._mem: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._mem_bytes = 0
        self._inflight: dict[str, asyncio.Future] = {}
        self.cache_dir = Path(self.opt.cache_dir) if self.opt.cache_dir else None
        self.last_modified = format_datetime(
            BASE_DATE + timedelta(days=7 * catalog.options.epoch), usegmt=True)
        self.layout = make_layout(self.opt.layout, catalog, self.opt.page_size)
        # the products that show a broken image (--dead-links)
        self.broken = set(sorted(catalog.products)[:self.opt.dead_links])

    # ------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/robots.txt", self.robots)
        app.router.add_get("/_stats", self.get_stats)
        app.router.add_post("/_stats/reset", self.reset_stats)
        if self.layout.name == "demo":
            app.router.add_get("/", self.home)
            app.router.add_get("/category/{label}", self.category)
            app.router.add_get("/product/{pid}", self.product)
            app.router.add_get("/cdn/img/{variant}/{pid}/{filename}", self.image)
            app.router.add_get("/sitemap.xml", self.platform)
            app.router.add_route("*", "/{tail:.*}", self.not_found)
        else:
            app.router.add_get("/{tail:.*}", self.platform)
            app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, app: web.Application) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _kind(self, path: str) -> str:
        if path == "/":
            return "home"
        if path == "/robots.txt":
            return "robots"
        if path.startswith(DISALLOWED):
            return "disallowed"
        if self.layout.name != "demo" or path == "/sitemap.xml":
            return self.layout.kind(path)
        if path.startswith("/cdn/img/full/"):
            return "image"
        if path.startswith("/cdn/img/"):
            return "thumbnail"
        for prefix in ("category", "product"):
            if path.startswith(f"/{prefix}/"):
                return prefix
        return "other"

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        path = request.path
        if path.startswith("/_stats"):
            return await handler(request)
        now = time.monotonic()
        st = self.stats
        st.first_request = st.first_request or time.time()
        st.last_request = time.time()
        ip = request.remote or "?"
        st.clients.add(ip)
        kind = self._kind(path)
        st.by_kind[kind] += 1
        if kind == "disallowed":
            st.robots_violations += 1
        resp = self._police(ip, now)
        if resp is None and kind != "robots" and self.opt.faults > 0 and \
                self.random.random() < self.opt.faults:
            resp = await self._fault(request)
        if resp is None:
            resp = await handler(request)
        if kind == "image" and resp.status == 200 and not resp.prepared:
            # count an image as served only once it was handed to a live connection:
            # a client killed mid-request never got an answer
            try:
                await resp.prepare(request)
                await resp.write_eof()
            except (ConnectionError, RuntimeError):
                st.by_status[499] += 1
                return resp
            if request.transport is None or request.transport.is_closing():
                st.by_status[499] += 1
                return resp
            st.image_200[path] += 1
        st.by_status[resp.status] += 1
        return resp

    def _police(self, ip: str, now: float) -> web.Response | None:
        """Token bucket, penalty window and bans for one client."""
        o = self.opt
        c = self.clients.get(ip)
        if c is None:
            c = self.clients[ip] = _Client(tokens=float(o.burst), stamp=now)
        if c.banned_until > now:
            self.stats.banned_requests += 1
            return web.Response(status=403, text="Access denied: too many requests. You are "
                                "temporarily banned.\n", headers={"Retry-After": str(
                                    math.ceil(c.banned_until - now))})
        c.tokens = min(float(o.burst), c.tokens + (now - c.stamp) * o.rate_limit)
        c.stamp = now
        if now < c.penalty_until:
            c.strikes += 1
            if c.strikes >= o.ban_strikes:
                c.banned_until = now + o.ban_seconds
                c.strikes = 0
                self.stats.bans += 1
                logger.warning("banning %s for %.0f s", ip, o.ban_seconds)
                self.stats.banned_requests += 1
                return web.Response(status=403, text="Access denied: banned.\n")
        if c.tokens >= 1.0:
            c.tokens -= 1.0
            if now >= c.penalty_until:
                c.strikes = 0
            return None
        wait = max(1, math.ceil((1.0 - c.tokens) / o.rate_limit))
        c.penalty_until = max(c.penalty_until, now + wait)
        self.stats.rate_limited += 1
        return web.Response(status=429, text="Too Many Requests\n", headers={"Retry-After": str(wait)})

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        kind = self.random.choice(["slow", "503", "reset"])
        self.stats.faults[kind] += 1
        if kind == "slow":
            await asyncio.sleep(self.random.uniform(*self.opt.slow_s))
            return None
        if kind == "503":
            return web.Response(status=503, text="Service temporarily unavailable\n",
                                headers={"Retry-After": str(self.random.randint(1, 2))})
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("injected connection reset")

    # ------------------------------------------------------------------ pages
    def _page(self, request: web.Request, title: str, body: str, tag: str = "",
              last_modified: str | None = None) -> web.Response:
        doc = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
               f"{html.escape(title)} | Gem Emporium</title></head><body>"
               f"<header><a class='logo' href='/'>Gem Emporium</a> "
               f"<a href='/search?q='>Search</a> <a href='/account/login'>Sign in</a> "
               f"<a href='/cart'>Cart</a></header>{body}"
               f"<footer>© Gem Emporium demo store</footer></body></html>")
        # a product page's validators change with its images, so that a 304 means they stand
        return self._conditional(request, doc.encode(), "text/html; charset=utf-8",
                                 '"' + hashlib.sha1((doc + tag).encode()).hexdigest()[:20] + '"',
                                 last_modified or self.last_modified)

    def _base(self, request: web.Request) -> str:
        return f"{request.scheme}://{request.host}"

    async def platform(self, request: web.Request) -> web.Response:
        """Every page, sitemap and image of a platform layout (and the demo's sitemap)."""
        got = self.layout.route(request.path, dict(request.query), self._base(request))
        if got is None:
            return await self.not_found(request)
        if isinstance(got, ImageRef):
            return await self._image_answer(request, got.entry, got.width)
        assert isinstance(got, Page)
        data = got.body.encode()
        etag = '"' + hashlib.sha1(data + got.tag.encode()).hexdigest()[:20] + '"'
        return self._conditional(request, data, got.ctype, etag,
                                 format_datetime(got.modified, usegmt=True))

    def _conditional(self, request: web.Request, data: bytes, ctype: str, etag: str,
                     last_modified: str) -> web.Response:
        headers = {"ETag": etag, "Last-Modified": last_modified, "Cache-Control": "max-age=3600"}
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        if inm is not None:
            if etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
                return web.Response(status=304, headers=headers)
        elif ims is not None:
            with contextlib.suppress(TypeError, ValueError):
                if parsedate_to_datetime(ims) >= parsedate_to_datetime(last_modified):
                    return web.Response(status=304, headers=headers)
        return web.Response(body=data, content_type=ctype.split(";")[0],
                            charset="utf-8" if "charset" in ctype else None, headers=headers)

    async def robots(self, request: web.Request) -> web.Response:
        delay = 1.0 / self.opt.rate_limit
        lines = ["User-agent: *", f"Crawl-delay: {delay:.3g}"]
        lines += [f"Disallow: {p}" for p in DISALLOWED]
        sitemap = "/wp-sitemap.xml" if self.layout.name == "woocommerce" else "/sitemap.xml"
        lines += ["Allow: /", "", "User-agent: BadBot", "Disallow: /", "",
                  f"Sitemap: {self._base(request)}{sitemap}", ""]
        return web.Response(text="\n".join(lines), content_type="text/plain")

    async def home(self, request: web.Request) -> web.Response:
        cats = "".join(
            f"<li><a class='category' href='/category/{c}'>{html.escape(c.replace('-', ' ').title())}"
            f"</a> ({len(self.catalog.by_label[c])})</li>" for c in self.catalog.categories)
        body = (f"<h1>Natural gemstones</h1><nav class='categories'><ul>{cats}</ul></nav>"
                f"<p>Free shipping on orders over $500. <a href='/account/register'>Join</a></p>")
        return self._page(request, "Home", body)

    async def category(self, request: web.Request) -> web.Response:
        label = request.match_info["label"]
        products = self.catalog.by_label.get(label)
        if products is None:
            return await self.not_found(request)
        try:
            page = int(request.query.get("page", "1"))
        except ValueError:
            page = 1
        size = self.opt.page_size
        pages = max(1, math.ceil(len(products) / size))
        if not 1 <= page <= pages:
            return await self.not_found(request)
        cards = []
        if self.opt.dead_links and page == 1 and label == self.catalog.categories[0]:
            cards += [f"<div class='product-card'><a class='product-link' href='/product/gone-{k}'>"
                      f"Sold out {k}</a></div>" for k in range(self.opt.dead_links)]
        for p in products[(page - 1) * size: page * size]:
            thumb = p.images[0].thumb_url
            cards.append(
                f"<div class='product-card'><a class='product-link' href='/product/{p.product_id}'>"
                f"<img src='{thumb}' alt='{html.escape(p.title)}'></a>"
                f"<a class='product-name' href='/product/{p.product_id}'>{html.escape(p.title)}</a>"
                f"<span class='price'>${p.attrs.get('price', '')}</span></div>")
        nav = []
        if page > 1:
            nav.append(f"<a rel='prev' href='/category/{label}?page={page - 1}'>Previous</a>")
        nav.append(f"<span class='page'>Page {page} of {pages}</span>")
        if page < pages:
            nav.append(f"<a rel='next' href='/category/{label}?page={page + 1}'>Next</a>")
        title = label.replace("-", " ").title()
        body = (f"<nav class='breadcrumb'><a href='/'>Home</a> › <span>{html.escape(title)}</span>"
                f"</nav><h1>{html.escape(title)}</h1>"
                f"<div class='sort'><a href='/search?cat={label}&sort=price'>Sort by price</a></div>"
                f"<div class='product-grid'>{''.join(cards)}</div>"
                f"<nav class='pagination'>{' '.join(nav)}</nav>")
        return self._page(request, title, body)

    async def product(self, request: web.Request) -> web.Response:
        p = self.catalog.products.get(request.match_info["pid"])
        if p is None:
            return await self.not_found(request)
        gallery = "".join(
            f"<a class='zoom' href='{e.url}'><img src='{e.thumb_url}' data-full='{e.url}' "
            f"alt='{html.escape(p.title)} view {i + 1}'></a>" for i, e in enumerate(p.images))
        if p.product_id in self.broken:  # --dead-links: an image the CDN never serves
            gallery += f"<a class='zoom' href='/cdn/img/full/{p.product_id}/broken.jpg'>broken</a>"
        specs = "".join(f"<dt>{html.escape(k.title())}</dt><dd itemprop='{k}'>{html.escape(v)}</dd>"
                        for k, v in p.attrs.items() if k != "price")
        related = [q for q in self.catalog.by_label[p.label] if q.product_id != p.product_id][:4]
        rel = "".join(f"<a href='/product/{q.product_id}'><img src='{q.images[0].thumb_url}'></a>"
                      for q in related)
        title = p.label.replace("-", " ").title()
        body = (f"<nav class='breadcrumb'><a href='/'>Home</a> › <a class='category' "
                f"href='/category/{p.label}'>{html.escape(title)}</a></nav>"
                f"<article class='product' itemscope><h1 class='product-title' itemprop='name'>"
                f"{html.escape(p.title)}</h1><span class='price' itemprop='price' "
                f"content='{p.attrs.get('price', '')}'>${p.attrs.get('price', '')}</span>"
                f"<div class='gallery'>{gallery}</div><dl class='specs'>{specs}</dl>"
                f"<form action='/cart/add' method='post'><input type='hidden' name='sku' "
                f"value='{p.product_id}'><button>Add to cart</button></form></article>"
                f"<section class='related'><h2>You may also like</h2>{rel}</section>")
        return self._page(request, p.title, body, self.layout.version_tag(p),
                          format_datetime(self.catalog.product_modified(p), usegmt=True))

    async def image(self, request: web.Request) -> web.Response:
        info = request.match_info
        if info["pid"] in self.broken and info["filename"] == "broken.jpg":
            return web.Response(status=500, text="Internal Server Error")
        e = self.catalog.images.get(f"/cdn/img/full/{info['pid']}/{info['filename']}")
        if e is None or info["variant"] not in ("full", "w_200"):
            return await self.not_found(request)
        return await self._image_answer(request, e, None if info["variant"] == "full" else 200)

    async def _image_answer(self, request: web.Request, e: ImageEntry, width: int | None
                            ) -> web.Response:
        data, ctype = await self._bytes(e, width)
        etag = e.etag if width is None else e.etag[:-1] + (
            '-t"' if width == 200 and self.layout.name == "demo" else f'-{width}"')
        lm = format_datetime(self.catalog.last_modified(e), usegmt=True)
        return self._conditional(request, data, ctype, etag, lm)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html><body><h1>Page not found</h1></body></html>",
                            content_type="text/html")

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats = Stats()
        return web.json_response({"ok": True})

    # ------------------------------------------------------------------ bytes
    async def _bytes(self, e: ImageEntry, width: int | None) -> tuple[bytes, str]:
        key = e.etag.strip('"') + ("" if width is None else "-t" if width == 200 else f"-{width}")
        hit = self._mem.get(key)
        if hit is not None:
            self._mem.move_to_end(key)
            return hit
        fut = self._inflight.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self.pool, self._render, e, width, key)
            self._inflight[key] = fut
            try:
                out = await fut
            finally:
                self._inflight.pop(key, None)
        else:
            out = await fut
        self._mem[key] = out
        self._mem_bytes += len(out[0])
        while self._mem_bytes > 256 * 2**20 and self._mem:
            _, (old, _) = self._mem.popitem(last=False)
            self._mem_bytes -= len(old)
        return out

    def _render(self, e: ImageEntry, width: int | None, key: str) -> tuple[bytes, str]:
        cached = self.cache_dir / f"{key}.bin" if self.cache_dir and e.kind != "file" else None
        if cached is not None and cached.exists():
            blob = cached.read_bytes()
            n = blob.index(b"\n")
            return blob[n + 1:], blob[:n].decode()
        data, ctype = self.catalog.render(e)
        if width is not None:
            data, ctype = _thumbnail(data, ctype, width)
        if cached is not None:
            atomic.write_bytes(cached, ctype.encode() + b"\n" + data)
        return data, ctype


def _thumbnail(data: bytes, ctype: str, side: int = 200) -> tuple[bytes, str]:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > 50_000_000:
                return data, ctype
            im.draft("RGB", (side, side))
            im = im.convert("RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            return buf.getvalue(), "image/jpeg"
    except Exception:
        return data, ctype


def default_cache_dir() -> str:
    """``$GEMCURATE_CACHE`` or ``~/.cache/gemcurate/storefront``."""
    base = os.environ.get("GEMCURATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gemcurate")
    return os.path.join(base, "storefront")


def serve(catalog_opts: CatalogOptions, server_opts: ServerOptions, host: str = "127.0.0.1",
          port: int = 8000, port_file: str | None = None) -> None:
    """Build the catalog and serve it until interrupted.

    Args:
        catalog_opts: What to sell.
        server_opts: How to behave.
        host: Interface to bind.
        port: TCP port; 0 picks a free one.
        port_file: If given, the bound port is written there (atomically) once listening.
    """
    t0 = time.time()
    catalog = Catalog.build(catalog_opts)
    n_img = len(catalog.images)
    logger.info("catalog: %d categories, %d products, %d images (built in %.1fs)",
                len(catalog.categories), len(catalog.products), n_img, time.time() - t0)
    front = Storefront(catalog, server_opts)

    async def main() -> None:
        runner = web.AppRunner(front.app(), access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=256)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"gemcurate storefront serving on http://{host}:{bound}/ "
              f"({server_opts.layout} layout, {len(catalog.products)} products, {n_img} images, "
              f"epoch {catalog_opts.epoch}, "
              f"rate limit {server_opts.rate_limit}/s)", flush=True)
        if port_file:
            atomic.write_text(port_file, str(bound))
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())


def write_truth(catalog_opts: CatalogOptions, out: str, layout: str = "demo") -> dict:
    """Write the ground truth of a catalog to ``out`` (JSON) without serving it."""
    truth = ground_truth(Catalog.build(catalog_opts), layout)
    atomic.write_text(out, json.dumps(truth, indent=1))
    return truth


