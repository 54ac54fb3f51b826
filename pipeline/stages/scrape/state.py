"""Crawl state in a SQL database: runs, the frontier, pages, products and images.

SQLite by default (a file under the data dir), PostgreSQL by URL
(``postgresql+psycopg://user@host/db``). Every download is committed together
with its frontier item, so a crawl killed at any point resumes where it stopped
and never downloads a finished URL again.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from pipeline.core.db import make_engine, sqlite_url

logger = logging.getLogger(__name__)

meta = sa.MetaData()

runs = sa.Table(
    "runs", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(64), nullable=False, index=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(32), nullable=False),  # running, complete, banned, stopped
    sa.Column("message", sa.Text),
    sa.Column("stats", sa.Text),
)

frontier = sa.Table(
    "frontier", meta,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # home, category, product, image
    sa.Column("payload", sa.Text),
    # pending, done, failed (this pass; a rerun retries it), dead (given up on: see unreachable)
    sa.Column("state", sa.String(16), nullable=False, default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("detail", sa.Text),
)

pages = sa.Table(
    "pages", meta,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("etag", sa.String(256)),
    sa.Column("last_modified", sa.String(64)),
    sa.Column("extracted", sa.Text),
    sa.Column("fetched_at", sa.DateTime(timezone=True)),
    sa.Column("last_run", sa.Integer),
)

products = sa.Table(
    "products", meta,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("product_id", sa.String(256), primary_key=True),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("attrs", sa.Text),
    sa.Column("first_seen_run", sa.Integer, nullable=False),
    sa.Column("last_seen_run", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default="active"),
)

images = sa.Table(
    "images", meta,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("product_id", sa.String(256), nullable=False),
    sa.Column("product_url", sa.String(2048), nullable=False),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("image_index", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("path", sa.String(256)),
    sa.Column("etag", sa.String(256)),
    sa.Column("last_modified", sa.String(64)),
    sa.Column("content_type", sa.String(128)),
    sa.Column("n_bytes", sa.BigInteger),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("format", sa.String(16)),
    sa.Column("excluded_reason", sa.String(64)),
    sa.Column("detail", sa.Text),
    sa.Column("checked", sa.Boolean, nullable=False, default=False),
    sa.Column("fetched_at", sa.DateTime(timezone=True)),
    sa.Column("first_seen_run", sa.Integer, nullable=False),
    sa.Column("last_seen_run", sa.Integer, nullable=False),
    sa.Column("changed_run", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False, default="active"),
)


# URLs that failed, across runs: ``passes`` counts the consecutive scrape invocations in
# which a URL failed after its retries; ``dead`` once it never can succeed (an off-site
# redirect, a 4xx other than 429, refused by scope or robots.txt) or failed
# ``scrape.give_up_after`` passes in a row. A success deletes the row.
unreachable = sa.Table(
    "unreachable", meta,
    sa.Column("site", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(2048), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("passes", sa.Integer, nullable=False, default=0),
    sa.Column("dead", sa.Boolean, nullable=False, default=False),
    sa.Column("permanent", sa.Boolean, nullable=False, default=False),
    sa.Column("detail", sa.Text),
    sa.Column("first_failed_at", sa.DateTime(timezone=True)),
    sa.Column("last_failed_at", sa.DateTime(timezone=True)),
    sa.Column("last_run", sa.Integer),
)

FINISHED = ("complete", "complete_with_dead_links")
# a run that will never resume: finished, or abandoned (the store moved to another address)
CLOSED = (*FINISHED, "abandoned")


def now() -> datetime:
    return datetime.now(UTC)


def default_url(data_dir: str | Path) -> str:
    """``sqlite:///<data_dir>/state/crawl.sqlite``."""
    return sqlite_url(Path(data_dir) / "state" / "crawl.sqlite")


def connect(url: str) -> sa.Engine:
    """Open (and create the tables of) the state database at ``url``."""
    engine = make_engine(url)
    meta.create_all(engine)
    return engine




class CrawlState:
    """Typed access to the state tables of one site.

    Args:
        engine: From :func:`connect`.
        site: The site adapter's name.
    """

    def __init__(self, engine: sa.Engine, site: str) -> None:
        self.engine = engine
        self.site = site
        self._seq = 0
        self._counted: set[str] = set()  # URLs whose failure this invocation counted

    # ------------------------------------------------------------------ runs
    def open_run(self) -> tuple[int, bool]:
        """Resume the site's unfinished run, or start a new one.

        Returns:
            ``(run_id, resumed)``.
        """
        with self.engine.begin() as c:
            row = c.execute(
                sa.select(runs.c.id).where(runs.c.site == self.site, runs.c.status.not_in(CLOSED))
                .order_by(runs.c.id.desc()).limit(1)).first()
            if row is not None:
                c.execute(runs.update().where(runs.c.id == row.id).values(status="running"))
                seq = c.execute(sa.select(sa.func.max(frontier.c.seq))
                                .where(frontier.c.run_id == row.id)).scalar()
                self._seq = (seq or 0) + 1
                return row.id, True
            rid = c.execute(runs.insert().values(site=self.site, started_at=now(),
                                                 status="running")).inserted_primary_key[0]
            return int(rid), False

    def abandon(self, run_id: int, why: str) -> None:
        """Close an unfinished run for good (its frontier is dropped; what it saved stays)."""
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.id == run_id).values(
                status="abandoned", message=why, finished_at=now()))
            c.execute(frontier.delete().where(frontier.c.run_id == run_id))

    def note_run(self, run_id: int, note: dict) -> None:
        """Keep ``note`` in the run's stats until it finishes (what kind of pass it is)."""
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.id == run_id, runs.c.stats.is_(None))
                      .values(stats=json.dumps(note)))

    def run_note(self, run_id: int) -> dict:
        with self.engine.connect() as c:
            text = c.execute(sa.select(runs.c.stats).where(runs.c.id == run_id)).scalar()
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def finish_run(self, run_id: int, status: str, message: str, stats: dict) -> None:
        with self.engine.begin() as c:
            c.execute(runs.update().where(runs.c.id == run_id).values(
                status=status, message=message, stats=json.dumps(stats),
                finished_at=now() if status in FINISHED else None))
            if status in FINISHED:
                c.execute(frontier.delete().where(frontier.c.run_id == run_id))

    # ------------------------------------------------------------------ frontier
    def add(self, run_id: int, items: list[tuple[str, str, dict | None]]) -> list[tuple]:
        """Add ``(url, kind, payload)`` items not yet in this run's frontier.

        Returns:
            The newly added items as ``(seq, url, kind, payload)``.
        """
        if not items:
            return []
        urls = list(dict.fromkeys(u for u, _, _ in items))
        with self.engine.begin() as c:
            have = set()
            for i in range(0, len(urls), 500):
                have |= set(c.execute(sa.select(frontier.c.url).where(
                    frontier.c.run_id == run_id, frontier.c.url.in_(urls[i:i + 500]))).scalars())
            new, seen = [], set()
            for url, kind, payload in items:
                if url in have or url in seen:
                    continue
                seen.add(url)
                new.append(dict(run_id=run_id, url=url, seq=self._seq, kind=kind,
                                payload=json.dumps(payload) if payload else None,
                                state="pending", attempts=0))
                self._seq += 1
            if new:
                c.execute(frontier.insert(), new)
        return [(r["seq"], r["url"], r["kind"], json.loads(r["payload"]) if r["payload"] else None)
                for r in new]

    def pending(self, run_id: int) -> list[tuple]:
        """Unfinished items of the run, in discovery order."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(frontier.c.seq, frontier.c.url, frontier.c.kind,
                                       frontier.c.payload)
                             .where(frontier.c.run_id == run_id,
                                    frontier.c.state.not_in(("done", "dead")))
                             .order_by(frontier.c.seq)).all()
        return [(r.seq, r.url, r.kind, json.loads(r.payload) if r.payload else None) for r in rows]

    def frontier_counts(self, run_id: int) -> dict[str, int]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(frontier.c.state, sa.func.count()).where(
                frontier.c.run_id == run_id).group_by(frontier.c.state)).all()
        return {r[0]: r[1] for r in rows}

    def _mark(self, c: sa.Connection, run_id: int, url: str, state: str, detail: str | None,
              attempts: int) -> None:
        c.execute(frontier.update().where(frontier.c.run_id == run_id, frontier.c.url == url)
                  .values(state=state, detail=detail, attempts=attempts))

    def mark(self, run_id: int, url: str, state: str, detail: str | None = None,
             attempts: int = 0) -> None:
        with self.engine.begin() as c:
            self._mark(c, run_id, url, state, detail, attempts)

    # ------------------------------------------------------------------ pages
    def page(self, url: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(pages).where(pages.c.site == self.site, pages.c.url == url)
                            ).mappings().first()
        return dict(row) if row else None

    def save_page(self, run_id: int, url: str, kind: str, etag: str | None, lm: str | None,
                  extracted: dict, attempts: int, fetched: bool) -> None:
        values = dict(kind=kind, extracted=json.dumps(extracted), last_run=run_id)
        if fetched:
            values.update(etag=etag, last_modified=lm, fetched_at=now())
        with self.engine.begin() as c:
            n = c.execute(pages.update().where(pages.c.site == self.site, pages.c.url == url)
                          .values(**values)).rowcount
            if not n:
                c.execute(pages.insert().values(site=self.site, url=url, **values))
            self._mark(c, run_id, url, "done", None, attempts)

    def save_product(self, run_id: int, product_id: str, url: str, label: str, attrs: dict) -> None:
        with self.engine.begin() as c:
            n = c.execute(products.update().where(products.c.site == self.site,
                                                  products.c.product_id == product_id)
                          .values(url=url, label=label, attrs=json.dumps(attrs),
                                  last_seen_run=run_id, status="active")).rowcount
            if not n:
                c.execute(products.insert().values(
                    site=self.site, product_id=product_id, url=url, label=label,
                    attrs=json.dumps(attrs), first_seen_run=run_id, last_seen_run=run_id,
                    status="active"))

    def product_images(self, product_url: str) -> list[dict]:
        """The active image rows a product page listed."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(images.c.url, images.c.path, images.c.excluded_reason,
                                       images.c.checked).where(
                images.c.site == self.site, images.c.product_url == product_url,
                images.c.status == "active")).mappings().all()
        return [dict(r) for r in rows]

    def carry_product(self, run_id: int, product_url: str, product_id: str,
                      image_urls: list[str]) -> None:
        """Mark an unchanged product and its images as seen in this run (no request was sent)."""
        with self.engine.begin() as c:
            c.execute(products.update().where(products.c.site == self.site,
                                              products.c.product_id == product_id)
                      .values(last_seen_run=run_id, status="active"))
            for i in range(0, len(image_urls), 500):
                c.execute(images.update().where(images.c.site == self.site,
                                                images.c.url.in_(image_urls[i:i + 500]))
                          .values(last_seen_run=run_id))
            c.execute(pages.update().where(pages.c.site == self.site, pages.c.url == product_url)
                      .values(last_run=run_id))

    def complete_runs(self) -> int:
        """How many crawls of the site completed."""
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(runs).where(
                runs.c.site == self.site, runs.c.status.in_(FINISHED))).scalar() or 0)

    # ------------------------------------------------------------------ unreachable URLs
    def unreachable_urls(self) -> dict[str, dict]:
        """Every URL of the site that failed in its latest pass(es), by URL."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(unreachable).where(unreachable.c.site == self.site)
                             ).mappings().all()
        return {r["url"]: dict(r) for r in rows}

    def record_failure(self, run_id: int, url: str, kind: str, detail: str, permanent: bool,
                       give_up_after: int) -> bool:
        """Count a failed pass of ``url``; returns whether it is now dead.

        A URL that was dead before stays dead when it fails again (the retry at a full
        pass); a URL counts once per pass (one :class:`CrawlState` is one invocation).
        """
        t = now()
        with self.engine.begin() as c:
            old = c.execute(sa.select(unreachable).where(
                unreachable.c.site == self.site, unreachable.c.url == url)).mappings().first()
            if old is None:
                dead = permanent or give_up_after <= 1
                c.execute(unreachable.insert().values(
                    site=self.site, url=url, kind=kind, passes=1, dead=dead, permanent=permanent,
                    detail=detail, first_failed_at=t, last_failed_at=t, last_run=run_id))
                self._counted.add(url)
                return dead
            counted = url in self._counted
            passes = old["passes"] + (0 if counted else 1)
            dead = bool(old["dead"]) or permanent or passes >= give_up_after
            c.execute(unreachable.update().where(unreachable.c.site == self.site,
                                                 unreachable.c.url == url).values(
                kind=kind, passes=passes, dead=dead, permanent=permanent, detail=detail,
                last_failed_at=t, last_run=run_id))
            self._counted.add(url)
            return dead

    def still_dead(self, run_id: int, url: str) -> None:
        """A dead URL skipped in this run (an incremental pass retries none)."""
        with self.engine.begin() as c:
            c.execute(unreachable.update().where(unreachable.c.site == self.site,
                                                 unreachable.c.url == url).values(last_run=run_id))

    def reachable(self, url: str) -> None:
        """``url`` answered: it is no longer failed or dead."""
        with self.engine.begin() as c:
            c.execute(unreachable.delete().where(unreachable.c.site == self.site,
                                                 unreachable.c.url == url))

    def unreachable_in(self, run_id: int) -> list[dict]:
        """The URLs that failed (or stayed dead) in run ``run_id``, dead ones first."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(unreachable).where(
                unreachable.c.site == self.site, unreachable.c.last_run == run_id)
                .order_by(unreachable.c.dead.desc(), unreachable.c.kind, unreachable.c.url)
            ).mappings().all()
        return [dict(r) for r in rows]

    def keep_behind(self, run_id: int, page_urls: list[str]) -> tuple[int, int]:
        """Keep what the unreadable pages ``page_urls`` listed when they were last read.

        Walks the stored extractions from those pages (categories, next pages, products)
        through every page not read in this run, and marks the products found, and their
        active images, as seen in ``run_id`` with their last known rows: a page that could
        not be read removes nothing. Returns the products and images kept.
        """
        with self.engine.connect() as c:
            stored = {r.url: (r.extracted, r.last_run) for r in c.execute(
                sa.select(pages.c.url, pages.c.extracted, pages.c.last_run)
                .where(pages.c.site == self.site))}
        start = set(page_urls)
        todo, seen, behind = list(page_urls), set(), []
        while todo:
            url = todo.pop()
            if url in seen:
                continue
            seen.add(url)
            extracted, last_run = stored.get(url, (None, None))
            if extracted is None or (last_run == run_id and url not in start):
                continue  # never read, or read in this run (its links were followed)
            behind.append(url)
            try:
                ext = json.loads(extracted)
            except ValueError:
                continue
            for key in ("categories", "next", "products"):
                todo += [u for u in ext.get(key) or [] if isinstance(u, str)]
        n_prod = n_img = 0
        with self.engine.begin() as c:
            for i in range(0, len(behind), 500):
                chunk = behind[i:i + 500]
                n_prod += c.execute(products.update().where(
                    products.c.site == self.site, products.c.url.in_(chunk),
                    products.c.status == "active", products.c.last_seen_run < run_id)
                    .values(last_seen_run=run_id)).rowcount
                n_img += c.execute(images.update().where(
                    images.c.site == self.site, images.c.product_url.in_(chunk),
                    images.c.status == "active", images.c.last_seen_run < run_id)
                    .values(last_seen_run=run_id)).rowcount
        return n_prod, n_img

    def keep_all(self, run_id: int) -> tuple[int, int]:
        """Nothing is removed in ``run_id`` (the discovery sitemap could not be read)."""
        with self.engine.begin() as c:
            n_prod = c.execute(products.update().where(
                products.c.site == self.site, products.c.status == "active",
                products.c.last_seen_run < run_id).values(last_seen_run=run_id)).rowcount
            n_img = c.execute(images.update().where(
                images.c.site == self.site, images.c.status == "active",
                images.c.last_seen_run < run_id).values(last_seen_run=run_id)).rowcount
        return n_prod, n_img

    # ------------------------------------------------------------------ images
    def image(self, url: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(images).where(images.c.site == self.site, images.c.url == url)
                            ).mappings().first()
        return dict(row) if row else None

    def save_image(self, run_id: int, url: str, meta_: dict, values: dict, attempts: int) -> None:
        """Upsert an image row and finish its frontier item, in one transaction.

        Args:
            run_id: Current run.
            url: Image URL.
            meta_: ``product_id``, ``product_url``, ``label``, ``image_index``.
            values: Columns to set (download results); ``sha256`` changes set
                ``changed_run``.
            attempts: Requests spent on it.
        """
        with self.engine.begin() as c:
            old = c.execute(sa.select(images.c.sha256, images.c.first_seen_run).where(
                images.c.site == self.site, images.c.url == url)).first()
            vals = dict(meta_, **values, last_seen_run=run_id, status="active")
            if old is None:
                c.execute(images.insert().values(site=self.site, url=url, first_seen_run=run_id,
                                                 changed_run=None, **vals))
            else:
                if "sha256" in values and old.sha256 is not None and values["sha256"] != old.sha256:
                    vals["changed_run"] = run_id
                c.execute(images.update().where(images.c.site == self.site, images.c.url == url)
                          .values(**vals))
            self._mark(c, run_id, url, "done", values.get("excluded_reason"), attempts)

    def set_check(self, url: str, values: dict) -> None:
        with self.engine.begin() as c:
            c.execute(images.update().where(images.c.site == self.site, images.c.url == url)
                      .values(checked=True, **values))

    def unchecked(self) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(images.c.url, images.c.path, images.c.content_type).where(
                images.c.site == self.site, images.c.checked.is_(False),
                images.c.path.is_not(None))).mappings().all()
        return [dict(r) for r in rows]

    def mark_removed(self, run_id: int) -> tuple[list[str], int]:
        """After a complete run: what it did not see is removed.

        Returns:
            Removed product ids, and the number of removed image URLs.
        """
        with self.engine.begin() as c:
            gone = list(c.execute(sa.select(products.c.product_id).where(
                products.c.site == self.site, products.c.last_seen_run < run_id,
                products.c.status == "active")).scalars())
            c.execute(products.update().where(products.c.site == self.site,
                                              products.c.last_seen_run < run_id)
                      .values(status="removed"))
            n = c.execute(images.update().where(images.c.site == self.site,
                                                images.c.last_seen_run < run_id,
                                                images.c.status == "active")
                          .values(status="removed")).rowcount
        return gone, n

    def tables(self) -> tuple[list[dict], dict[str, dict]]:
        """All image rows and products of the site (for the manifest)."""
        with self.engine.connect() as c:
            imgs = [dict(r) for r in c.execute(sa.select(images).where(
                images.c.site == self.site)).mappings()]
            prods = {r["product_id"]: dict(r) for r in c.execute(sa.select(products).where(
                products.c.site == self.site)).mappings()}
        return imgs, prods
