"""``gemcurate scrape``: crawl a store into the content-addressed store and ``raw.parquet``.

Example:
    >>> from pipeline.core.config import load_params
    >>> result = scrape(load_params("params.yaml"), base_url="http://127.0.0.1:8000")
    >>> result.status
    'complete'
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.core import atomic, decisions, manifest
from pipeline.core.blobstore import open_store, sha256_hex
from pipeline.core.config import Params
from pipeline.core.errors import ExitCode
from pipeline.core.lock import data_dir_lock
from pipeline.core.text import printable
from pipeline.stages.scrape.crawler import Crawler, Stop, is_storage_error, short
from pipeline.stages.scrape.site import SiteConfig, load_site
from pipeline.stages.scrape.state import FINISHED, CrawlState, connect, default_url

logger = logging.getLogger(__name__)

# complete_with_dead_links is a success: the manifest is written, the dead URLs are listed
EXIT_CODES = {"complete": ExitCode.OK, "complete_with_dead_links": ExitCode.OK,
              "banned": ExitCode.BANNED, "incomplete": ExitCode.INCOMPLETE,
              "stopped": ExitCode.STOPPED, "disallowed": ExitCode.DISALLOWED}
# how many dead or failed URLs the summary JSON lists one by one (the count is always whole)
LISTED_URLS = 1000


@dataclass
class ScrapeResult:
    """What one invocation did."""

    run_id: int
    status: str
    message: str
    resumed: bool
    stats: dict = field(default_factory=dict)
    manifest_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES.get(self.status, ExitCode.ERROR))


def state_url(params: Params) -> str:
    return params.data.state_db or default_url(params.data.data_dir)


def scrape(params: Params, site: SiteConfig | None = None, base_url: str | None = None) -> ScrapeResult:
    """Crawl (or resume crawling) a site and, once complete, write ``raw.parquet``.

    Args:
        params: Validated params (``data`` and ``scrape`` sections).
        site: The adapter; loaded from ``params.scrape.site`` when ``None``.
        base_url: Overrides the adapter's ``base_url``.

    Returns:
        A :class:`ScrapeResult`; ``status`` is complete, complete_with_dead_links (every
        failure is a URL given up on: see ``scrape.give_up_after``), banned, incomplete,
        stopped or disallowed (robots.txt forbids the start URLs). Only the two complete
        statuses write the manifest; they mark as removed only what a fully read listing
        no longer shows (what a dead page listed keeps its last known rows).
    """
    site = site or load_site(params.scrape.site, base_url or params.scrape.base_url)
    with data_dir_lock(params.data.data_dir, f"gemcurate scrape ({site.name})"):
        return _scrape(params, site)


def _scrape(params: Params, site: SiteConfig) -> ScrapeResult:
    """:func:`_crawl`, turning a full disk anywhere (state, store, manifest) into a stop."""
    try:
        return _crawl(params, site)
    except Exception as exc:
        if not is_storage_error(exc):
            raise
        message = (f"cannot write the crawl state, the image store or the manifest ({short(exc)}); "
                   "is the disk full? Free space and rerun to resume (what was committed is kept)")
        logger.warning("stopping: %s", message)
        return ScrapeResult(0, "stopped", message, False, {})


# long: a crawl's lifecycle in order (state, resume or new run, store, session, crawl, manifest,
# summary), each a call
def _crawl(params: Params, site: SiteConfig) -> ScrapeResult:
    engine = connect(state_url(params))
    state = CrawlState(engine, site.name)
    store = open_store(params.data.store_root, params.data.data_dir)
    run_id, resumed = state.open_run()
    was = state.run_note(run_id).get("base_url") if resumed else None
    if resumed and was and was != site.base_url:
        # its frontier holds another address's URLs: resuming would crawl a store that moved
        state.abandon(run_id, f"the store moved from {was} to {site.base_url}; a new run started")
        logger.warning("run %d was of %s; the store is now at %s: starting a new run", run_id, was,
                       site.base_url)
        run_id, resumed = state.open_run()
    logger.info("%s run %d of site %s at %s", "resuming" if resumed else "starting", run_id,
                site.name, site.base_url)
    every = params.scrape.full_refresh_every
    done = state.complete_runs()
    full = resumed_full(state, run_id) if resumed else (
        every == 1 or done == 0 or (every > 1 and done % every == 0))
    crawler = Crawler(site, params.scrape, state, store, full_pass=full)
    if site.sitemap is not None or not full:
        logger.info("%s pass (scrape.full_refresh_every %d, %d complete crawls before)",
                    "full" if full else "incremental", every, done)
    state.note_run(run_id, {"full_pass": full, "base_url": site.base_url})
    t0 = time.time()
    try:
        asyncio.run(crawler.crawl(run_id, resumed))
    except Stop as exc:
        crawler._stop(str(exc), crawler.stop_status)
    except Exception as exc:  # a full disk before or after the workers ran
        if not is_storage_error(exc):
            raise
        crawler._stop(f"cannot write the crawl state or the image store ({short(exc)}); is the "
                      "disk full? Free space and rerun to resume (state saved)", "stopped")
    elapsed = time.time() - t0
    counts = state.frontier_counts(run_id)
    unreachable = state.unreachable_in(run_id)
    if crawler.stop_reason:
        status, message = crawler.stop_status, crawler.stop_reason
    elif crawler.start_disallowed and crawler.start_disallowed == len(site.start_urls):
        status = "disallowed"
        message = ("robots.txt disallows the start URL(s): nothing crawled, nothing marked "
                   "removed (the last complete crawl's manifest stands)")
    else:
        status, message = _outcome(params, crawler, counts, unreachable)
    stats = _stats(crawler, elapsed, counts)
    dead = [r for r in unreachable if r["dead"]]
    stats["dead_urls_total"] = len(dead)
    stats["dead_urls"] = [_url_row(r) for r in dead[:LISTED_URLS]]
    stats["failed_urls_total"] = len(unreachable) - len(dead)
    stats["failed_urls"] = [_url_row(r) for r in unreachable if not r["dead"]][:LISTED_URLS]
    out = None
    if status in FINISHED:
        if crawler.sitemap_dead:
            kept = state.keep_all(run_id)
        else:
            kept = state.keep_behind(run_id, [r["url"] for r in dead if r["kind"] != "image"])
        stats["kept_behind_dead"] = {"products": kept[0], "images": kept[1]}
        removed_products, removed_images = state.mark_removed(run_id)
        stats["products_removed"] = len(removed_products)
        stats["images_removed"] = removed_images
        df = build_manifest(state, site, run_id)
        out = manifest.manifest_path(params.data.data_dir, "raw")
        manifest.write_manifest(df, out)
        stats.update(_manifest_stats(df, state, run_id))
        atomic.write_text(out.with_name("raw_summary.json"), json.dumps(stats, indent=1, default=str))
    state.finish_run(run_id, status, message, stats)
    if params.data.review_db is None:
        # the curation stages read the decisions database (a DVC dependency): it exists
        # from the first scrape on, so `dvc repro` can follow a scrape directly
        decisions.connect(decisions.review_url(params.data.data_dir)).dispose()
    return ScrapeResult(run_id, status, message, resumed, stats, out)


def _outcome(params: Params, crawler: Crawler, counts: dict, unreachable: list[dict]
             ) -> tuple[str, str]:
    """Status and message of a crawl that ran its frontier to the end."""
    dead = [r for r in unreachable if r["dead"]]
    failed_pages = [r for r in unreachable if not r["dead"] and r["kind"] != "image"]
    failed_images = [r for r in unreachable if not r["dead"] and r["kind"] == "image"]
    if counts.get("pending") or crawler.failed_pages or counts.get("failed"):
        n = max(len(failed_pages), counts.get("failed", 0), crawler.failed_pages)
        example = f" (e.g. {failed_pages[0]['url']}: {failed_pages[0]['detail']})" if failed_pages else ""
        return "incomplete", (
            f"{n} page(s) failed in this pass{example}; nothing is marked removed. A rerun "
            f"retries them; a URL that fails {params.scrape.give_up_after} passes in a row "
            "(scrape.give_up_after) is given up on as dead and the crawl completes without it")
    notes = []
    if dead:
        notes.append(f"{len(dead)} dead URL(s) not read (listed in raw_summary.json; retried at "
                     "the next full pass); what they listed before keeps its last known rows")
    if failed_images:
        notes.append(f"{len(failed_images)} image(s) failed this time and are retried next crawl "
                     "(a last good copy stands)")
    if dead:
        return "complete_with_dead_links", "crawl complete; " + "; ".join(notes)
    return "complete", "crawl complete" + ("; " + "; ".join(notes) if notes else "")


def _url_row(r: dict) -> dict:
    return {"url": r["url"], "kind": r["kind"], "detail": r["detail"], "passes": r["passes"],
            "permanent": bool(r["permanent"]),
            "since": r["first_failed_at"].isoformat() if r["first_failed_at"] else None}


def resumed_full(state: CrawlState, run_id: int) -> bool:
    """A resumed run keeps the kind of pass it started as."""
    return bool(state.run_note(run_id).get("full_pass", True))


def _stats(cr: Crawler, elapsed: float, counts: dict) -> dict:
    c = cr.c
    span = (c.last_request or 0) - (c.first_request or 0)
    allowed = {h: (1.0 / d if d else None) for h, (_, _, d) in cr.hosts.items()}
    base_host = next(iter(cr.hosts), None)
    store_rate = allowed.get(base_host) if base_host else None
    achieved = (c.requests - 1) / span if span > 0 and c.requests > 1 else 0.0
    return {
        "elapsed_s": round(elapsed, 2), "requests": c.requests, "pages": c.pages,
        "pages_304": c.pages_304, "images_downloaded": c.images, "images_304": c.images_304,
        "bytes": c.bytes, "rate_limited_429": c.rate_limited, "retries": c.retries,
        "errors": c.errors, "bans": c.bans, "disallowed_skipped": c.disallowed,
        "full_pass": cr.full_pass, "base_url": cr.site.base_url, "sitemaps": c.sitemaps,
        "products_skipped": c.products_skipped, "images_skipped": c.images_skipped,
        "images_kept_after_failure": c.images_kept, "dead_skipped": c.dead_skipped,
        "unmapped_labels": dict(c.unmapped_labels),
        "by_status": {str(k): v for k, v in sorted(c.by_status.items())},
        "rejected": dict(c.rejected), "achieved_rate": round(achieved, 3),
        "store_allowed_rate": store_rate,
        "target_rate": round(cr.hosts[base_host][1].rate, 3) if base_host else None,
        "rate_share": round(achieved / store_rate, 4) if store_rate else None,
        "slowdowns": sum(lim.slowdowns for _, lim, _ in cr.hosts.values()),
        # time the workers spent waiting for their host's rate limiter (the price of politeness)
        "rate_limit_wait_s": round(sum(lim.waited for _, lim, _ in cr.hosts.values()), 1),
        "frontier": counts,
    }


def _manifest_stats(df: pd.DataFrame, state: CrawlState, run_id: int) -> dict:
    _, prods = state.tables()
    return {
        "manifest_rows": len(df),
        "images_active": int((df["status"] == "active").sum()),
        "images_usable": int(((df["status"] == "active") & df["excluded_reason"].isna()).sum()),
        "changes": {k: int(v) for k, v in df["change"].value_counts().items()},
        "excluded": {k: int(v) for k, v in df["excluded_reason"].value_counts().items()},
        "products_total": len(prods),
        "products_added": sum(p["first_seen_run"] == run_id for p in prods.values()),
        "products_active": sum(p["status"] == "active" for p in prods.values()),
    }


def build_manifest(state: CrawlState, site: SiteConfig, run_id: int) -> pd.DataFrame:
    """The raw manifest: one row per image URL ever listed, removed ones included."""
    imgs, prods = state.tables()
    rows = []
    for r in imgs:
        if r["last_seen_run"] < run_id:
            change = "removed"
        elif r["first_seen_run"] == run_id:
            change = "added"
        elif r["changed_run"] == run_id:
            change = "changed"
        else:
            change = "unchanged"
        reason = r["excluded_reason"]
        if r["status"] == "removed" and reason is None:
            reason = "removed_from_catalog"
        row = {
            "image_id": r["sha256"] or sha256_hex(("url:" + r["url"]).encode()),
            "path": r["path"], "label": r["label"], "product_id": r["product_id"],
            "site": site.name, "source_url": r["url"], "product_url": r["product_url"],
            "image_index": r["image_index"], "fetched_at": r["fetched_at"],
            "width": r["width"], "height": r["height"], "format": r["format"],
            "n_bytes": r["n_bytes"], "content_type": r["content_type"], "etag": r["etag"],
            "excluded_reason": reason, "excluded_detail": r["detail"], "status": r["status"],
            "change": change, "first_seen_run": r["first_seen_run"],
            "last_seen_run": r["last_seen_run"],
        }
        attrs = json.loads((prods.get(r["product_id"]) or {}).get("attrs") or "{}")
        for k, v in attrs.items():
            row[manifest.attr_col(k)] = v
        rows.append(row)
    if not rows:
        return manifest.empty("raw")
    df = pd.DataFrame(rows).sort_values(["label", "product_id", "image_index", "source_url"])
    return manifest.conform(df, "raw")


def format_summary(res: ScrapeResult, site: SiteConfig) -> str:
    """The closing summary printed by the CLI."""
    s = res.stats
    lines = [f"gemcurate scrape: run {res.run_id} {res.status} "
             f"({'resumed' if res.resumed else 'new'}) in {s.get('elapsed_s', 0):.1f}s — "
             f"{site.name} at {site.base_url}"]
    rate = f"{s.get('achieved_rate', 0):.2f}/s"
    if s.get("store_allowed_rate"):
        rate += (f" of {s['store_allowed_rate']:.2f}/s allowed by robots.txt "
                 f"({100 * (s.get('rate_share') or 0):.0f}%)")
    lines += [
        f"  requests     {s.get('requests', 0):>8,}   achieved rate {rate}",
        f"  pages        {s.get('pages', 0):>8,}   304 not modified: {s.get('pages_304', 0):,}",
        f"  images       {s.get('images_downloaded', 0):>8,}   304 not modified: "
        f"{s.get('images_304', 0):,}   unchanged, not requested: {s.get('images_skipped', 0):,}",
        f"  bytes        {s.get('bytes', 0) / 1e6:>8.1f} MB",
        f"  429s {s.get('rate_limited_429', 0)}, retries {s.get('retries', 0)}, "
        f"errors {s.get('errors', 0)}, bans {s.get('bans', 0)}, "
        f"robots-disallowed skipped {s.get('disallowed_skipped', 0)}",
    ]
    if "manifest_rows" in s:
        ch = s.get("changes", {})
        lines += [
            f"  manifest     {s['manifest_rows']:>8,} rows → {res.manifest_path}",
            f"  changes      added {ch.get('added', 0):,}, changed {ch.get('changed', 0):,}, "
            f"unchanged {ch.get('unchanged', 0):,}, removed {ch.get('removed', 0):,}",
            f"  products     {s.get('products_active', 0):,} active, added "
            f"{s.get('products_added', 0):,}, removed {s.get('products_removed', 0):,}",
            f"  usable       {s.get('images_usable', 0):,} images; excluded: "
            + (", ".join(f"{k} {v}" for k, v in sorted(s.get("excluded", {}).items())) or "none"),
        ]
    if s.get("products_skipped"):
        lines.append(f"  incremental  {s['products_skipped']:,} unchanged products kept without a request "
                     "(sitemap lastmod or a 304 page; scrape.full_refresh_every sets full passes)")
    if s.get("unmapped_labels"):
        lines.append("  unmapped     store labels not in label_map: " + ", ".join(
            f"{printable(k)} ({v})" for k, v in sorted(s["unmapped_labels"].items())))
    for key, what in (("dead_urls", "dead"), ("failed_urls", "failed")):
        listed = s.get(key) or []
        if listed:
            total = s.get(f"{key}_total", len(listed))
            lines.append(f"  {what:<12} {total:,} URL(s)" + (
                " (given up on; retried at the next full pass)" if what == "dead" else
                " (retried by the next run)"))
            lines += [f"    {r['kind']:<8} {printable(r['url'])}  {printable(r['detail'])}"
                      for r in listed[:10]]
            if total > 10:
                lines.append(f"    … {total - 10:,} more in raw_summary.json")
    if res.status != "complete" or res.message != "crawl complete":
        lines.append(f"  NOTE: {printable(res.message)}")
    return "\n".join(lines)
