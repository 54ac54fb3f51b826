"""``gemcurate scrape`` (crawl a store) and ``gemcurate site check`` (what each key of a site YAML finds)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.config import load_params
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser("scrape", help="crawl a store into the image store and raw.parquet")
    project_options(sc)
    sc.add_argument("--site", help="site adapter YAML (default: params scrape.site)")
    sc.add_argument("--base-url", help="override the site's base_url")
    sc.add_argument("--state-db", help="SQLAlchemy URL of the crawl state")
    sc.add_argument("--max-rate", type=float, help="cap on requests/s per host")
    sc.add_argument("--concurrency", type=int)
    sc.add_argument("--no-progress", action="store_true")
    sc.set_defaults(func=cmd_scrape)

    si = sub.add_parser("site", help="site adapters (sites/<name>.yaml)")
    sisub = si.add_subparsers(dest="site_cmd", required=True)
    chk = sisub.add_parser("check", help="fetch one listing and one product politely and print "
                                         "what each key of the YAML finds")
    chk.add_argument("file", help="the site adapter YAML")
    chk.add_argument("--base-url", help="override the file's base_url")
    chk.add_argument("--params", default="params.yaml",
                     help="politeness settings from this params file when it exists (else defaults)")
    chk.add_argument("--max-rate", type=float, help="cap on requests/s (default: params scrape.max_rate)")
    chk.add_argument("--show", type=int, default=3, help="values shown per key")
    chk.set_defaults(func=cmd_site_check)


def cmd_scrape(a: argparse.Namespace) -> int:
    from pipeline.project import refresh_lock
    from pipeline.stages.scrape import format_summary, scrape
    from pipeline.stages.scrape.site import load_site

    overrides = {"data": {"data_dir": a.data_dir, "state_db": a.state_db},
                 "scrape": {"site": a.site, "base_url": a.base_url, "max_rate": a.max_rate,
                            "concurrency": a.concurrency}}
    if a.no_progress:
        overrides["scrape"]["progress"] = False
    params = project_params(a, overrides)
    site = load_site(params.scrape.site, params.scrape.base_url)
    refresh_lock()
    res = scrape(params, site)
    print(format_summary(res, site))
    return res.exit_code


def cmd_site_check(a: argparse.Namespace) -> int:
    import dataclasses

    from pipeline.core.config import ScrapeParams
    from pipeline.stages.scrape.check import check_site
    from pipeline.stages.scrape.site import load_site

    site = load_site(a.file, a.base_url)
    sp = load_params(a.params).scrape if Path(a.params).exists() else ScrapeParams()
    sp = dataclasses.replace(sp, progress=False, max_rate=a.max_rate or sp.max_rate)
    print(f"gemcurate site check {a.file}: {site.name} at {site.base_url} "
          f"(user agent {sp.user_agent!r})")
    rep = check_site(site, sp)
    print(rep.format(a.show))
    return 0 if rep.ok else 1
