"""A small hostile store: real HTTP on 127.0.0.1 that misbehaves on purpose.

A raw asyncio server (not a web framework) so a response can break anywhere: after its
headers, mid-body, by stalling or by dripping. It serves a tiny catalog in the demo
storefront's HTML shape (so ``sites/demo.yaml`` scrapes it) and, per path, a behaviour
set by the test:

* ``ok`` — the page or image;
* ``redirect:<url>`` — ``302 Location: <url>``;
* ``reset`` — headers with the full Content-Length, half the body, then the connection
  closes;
* ``stall`` — headers, a few bytes, then nothing for a minute;
* ``drip`` — the whole body, one byte every 0.5 s;
* ``empty`` — ``200`` with ``Content-Length: 0`` (and the real file's ETag);
* ``status:<n>`` — that status with a short body;
* ``badgzip`` — ``Content-Encoding: gzip`` over bytes that are not gzip;
* ``gzipbomb`` — 1 MB of gzip that inflates to 200 MB;
* ``bigheader`` — a 200 KB header line.

Images carry an ETag (of the real file) and answer a matching ``If-None-Match`` with 304.
``robots`` is the robots.txt text, changeable between crawls. Every request is counted
per path in ``hits``.

Example:
    >>> with Hostile() as store:
    ...     store.behave("/cdn/p1-0.jpg", "reset")
    ...     scrape(params, base_url=store.base_url)
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import threading
from collections import Counter
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

PRODUCTS = {"ruby": ["R-1", "R-2"], "opal": ["O-1", "O-2"]}


def jpeg(seed: int, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 245, np.uint8)
    c = rng.integers(0, 200, 3)
    yy, xx = np.mgrid[:size, :size]
    img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = c
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _gzip_bomb() -> bytes:
    import gzip

    return gzip.compress(b"\0" * 200_000_000, compresslevel=9)


class Hostile:
    """The hostile store, running in a thread; use it as a context manager."""

    def __init__(self) -> None:
        self.behaviour: dict[str, str] = {}
        self.robots = "User-agent: *\nAllow: /\n"
        self.hits: Counter[str] = Counter()
        self.labels: dict[str, str] = {}  # product id → the label its page shows instead
        self.files: dict[str, tuple[bytes, str]] = {}  # path → (body, content type) served as is
        self.port = 0
        pids = [p for ps in PRODUCTS.values() for p in ps]
        self.images = {f"/cdn/{p.lower()}-{k}.jpg": jpeg(10 * i + k)
                       for i, p in enumerate(pids) for k in range(2)}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def behave(self, path: str, how: str) -> None:
        self.behaviour[path] = how

    # ------------------------------------------------------------------ pages
    def page(self, path: str) -> bytes | None:
        if path == "/":
            links = "".join(f"<a class='category' href='/category/{c}'>{c}</a>" for c in PRODUCTS)
            return f"<html><nav class='categories'>{links}</nav></html>".encode()
        if path.startswith("/category/"):
            label = path.rsplit("/", 1)[1]
            cards = "".join(f"<div class='product-card'><a class='product-link' href='/product/{p}'>"
                            f"{p}</a></div>" for p in PRODUCTS.get(label, []))
            return f"<html><div class='product-grid'>{cards}</div></html>".encode()
        if path.startswith("/product/"):
            pid = path.rsplit("/", 1)[1]
            label = self.labels.get(pid) or next((c for c, ps in PRODUCTS.items() if pid in ps), "evil")
            gallery = "".join(f"<a class='zoom' href='/cdn/{pid.lower()}-{k}.jpg'>x</a>" for k in range(2))
            label = html.escape(label, quote=True)
            return (f"<html><nav class='breadcrumb'><a class='category' href='/category/{label}'>"
                    f"{label}</a></nav><dl><dd itemprop='sku'>{pid}</dd></dl>"
                    f"<div class='gallery'>{gallery}</div></html>").encode()
        return None

    # ------------------------------------------------------------------ server
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode()
        inm = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                    if line.lower().startswith(b"if-none-match:")), None)
        path = urlsplit(target).path
        self.hits[path] += 1
        how = self.behaviour.get(path, "ok")
        if path == "/robots.txt":
            body, ctype = self.robots.encode(), "text/plain"
        elif path in self.files:
            body, ctype = self.files[path]
        elif path in self.images:
            body, ctype = self.images[path], "image/jpeg"
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            if inm == etag and how in ("ok", "empty"):
                await self._send(writer, 304, b"", ctype, [("ETag", etag)])
                writer.close()
                return
        else:
            page = self.page(path)
            body, ctype = (page, "text/html") if page is not None else (b"not found", "text/plain")
            if page is None and how == "ok":
                how = "status:404"
        try:
            if how.startswith("redirect:"):
                await self._send(writer, 302, b"", "text/plain", [("Location", how[9:])])
            elif how.startswith("status:"):
                code = int(how[7:])
                await self._send(writer, code, b"" if code in (204, 304) else b"no", "text/plain")
            elif how == "badgzip":
                await self._send(writer, 200, b"\x1f\x8bnot gzip at all" * 50, ctype,
                                 [("Content-Encoding", "gzip")])
            elif how == "gzipbomb":
                await self._send(writer, 200, _gzip_bomb(), ctype, [("Content-Encoding", "gzip")])
            elif how == "bigheader":
                await self._send(writer, 200, body, ctype, [("X-Filler", "x" * 200_000)])
            elif how == "empty":
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                await self._send(writer, 200, b"", ctype, [("ETag", etag)])
            elif how == "reset":
                writer.write(self._head(200, len(body), ctype) + body[: len(body) // 2])
                await writer.drain()
                writer.transport.abort()
                return
            elif how == "stall":
                writer.write(self._head(200, len(body), ctype) + body[:10])
                await writer.drain()
                await asyncio.sleep(60)
            elif how == "drip":
                writer.write(self._head(200, len(body), ctype))
                for b in body:
                    writer.write(bytes([b]))
                    await writer.drain()
                    await asyncio.sleep(0.5)
            else:
                extra = ([("ETag", f'"{hashlib.sha256(body).hexdigest()[:16]}"')]
                         if path in self.images else [])
                await self._send(writer, 200, body, ctype, extra)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _head(status: int, length: int, ctype: str, extra: list | None = None) -> bytes:
        lines = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {length}",
                 "Connection: close", *(f"{k}: {v}" for k, v in extra or [])]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _send(self, writer, status: int, body: bytes, ctype: str, extra: list | None = None):
        writer.write(self._head(status, len(body), ctype, extra) + body)
        await writer.drain()

    def __enter__(self) -> Hostile:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._server is not None

        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()
