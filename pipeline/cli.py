"""The ``gemcurate`` command line: one subcommand per stage, plus ``store``.

Example:
    $ gemcurate store serve --port 8000 &
    $ gemcurate scrape --base-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.config import ConfigError, load_params
from pipeline.errors import UserError

logger = logging.getLogger("gemcurate")


def _store_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("catalog")
    g.add_argument("--seed", type=int, default=0, help="catalog seed (default 0)")
    g.add_argument("--classes", default="12",
                   help="number of gem classes (1-20) or a comma-separated list of names")
    g.add_argument("--products-per-class", type=int, default=30)
    g.add_argument("--epoch", type=int, default=0,
                   help="catalog epoch: stock changes deterministically from one to the next")
    g.add_argument("--catalog", metavar="PATH",
                   help="serve a labelled folder tree <class>/<images> instead of generating")
    g.add_argument("--junk", action="append", default=[], metavar="KIND=PATH",
                   help="mix the images of PATH into products as junk KIND (certificate, hand)")
    g.add_argument("--min-images", type=int, default=2)
    g.add_argument("--max-images", type=int, default=6)
    g.add_argument("--junk-scale", type=float, default=1.0,
                   help="multiply the share of certificate/hand/duplicate/broken images")


def _catalog_options(a: argparse.Namespace):
    from pipeline.store.catalog import CatalogOptions

    classes: int | tuple[str, ...]
    classes = int(a.classes) if a.classes.isdigit() else tuple(
        c.strip() for c in a.classes.split(",") if c.strip())
    junk = []
    for item in a.junk:
        kind, sep, path = item.partition("=")
        if not sep or kind not in ("certificate", "hand") or not path:
            raise ConfigError(f"--junk {item!r}: expected certificate=PATH or hand=PATH")
        junk.append((kind, path))
    if a.products_per_class < 1:
        raise ConfigError("--products-per-class: must be at least 1")
    if a.epoch < 0:
        raise ConfigError("--epoch: must be 0 or more")
    if not 1 <= a.min_images <= a.max_images:
        raise ConfigError("--min-images/--max-images: need 1 <= min <= max")
    return CatalogOptions(seed=a.seed, classes=classes, products_per_class=a.products_per_class,
                          epoch=a.epoch, catalog=a.catalog, junk=tuple(junk),
                          min_images=a.min_images, max_images=a.max_images,
                          junk_scale=a.junk_scale)


def cmd_store_serve(a: argparse.Namespace) -> int:
    from pipeline.store.server import ServerOptions, default_cache_dir, serve

    if a.rate_limit <= 0:
        raise ConfigError("--rate-limit: must be positive")
    if not 0 <= a.faults <= 1:
        raise ConfigError("--faults: must be a probability in [0, 1]")
    opts = ServerOptions(rate_limit=a.rate_limit, burst=a.burst, faults=a.faults,
                         ban_strikes=a.ban_strikes, ban_seconds=a.ban_seconds,
                         page_size=a.page_size, fault_seed=a.seed,
                         cache_dir=None if a.no_cache else (a.cache_dir or default_cache_dir()))
    serve(_catalog_options(a), opts, a.host, a.port, a.port_file)
    return 0


def cmd_store_truth(a: argparse.Namespace) -> int:
    from pipeline.store.server import write_truth

    truth = write_truth(_catalog_options(a), a.out)
    junk: dict[str, int] = {}
    for im in truth["images"]:
        junk[str(im["junk"])] = junk.get(str(im["junk"]), 0) + 1
    print(f"wrote {a.out}: {len(truth['products'])} products, {len(truth['images'])} images, "
          f"junk {json.dumps(junk)}")
    return 0


def cmd_scrape(a: argparse.Namespace) -> int:
    from pipeline.scrape import format_summary, scrape
    from pipeline.scrape.site import load_site

    overrides = {"data": {"data_dir": a.data_dir, "state_db": a.state_db},
                 "scrape": {"site": a.site, "base_url": a.base_url, "max_rate": a.max_rate,
                            "concurrency": a.concurrency}}
    if a.no_progress:
        overrides["scrape"]["progress"] = False
    params = load_params(a.params, overrides)
    site = load_site(params.scrape.site, params.scrape.base_url)
    res = scrape(params, site)
    print(format_summary(res, site))
    return res.exit_code


def cmd_demo(a: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    store_args = ["--seed", str(a.seed), "--rate-limit", str(a.rate_limit), *a.store_args]
    return run_demo(a.params, a.data_dir, store_args, scrape_only=a.scrape_only,
                    publish=not a.no_publish)


STAGES = {
    "dedupe": ("pipeline.dedupe", "exact and near-duplicate clusters, one representative each"),
    "filter": ("pipeline.filter", "certificate/hand/quality checks, review flags, annotator decisions"),
    "crop": ("pipeline.crop", "region-of-interest crop to square target-size images"),
    "report": ("pipeline.report", "HTML curation report with contact sheets"),
    "split": ("pipeline.split", "group-aware, stratified, stable train/val/test split"),
    "augment": ("pipeline.augment", "balance train classes with rotations and mirrors"),
    "validate": ("pipeline.validate", "Great Expectations gates; non-zero exit on failure"),
    "export": ("pipeline.export", "tar shards + manifest + dataset card in data/dataset"),
}


def cmd_stage(a: argparse.Namespace) -> int:
    import importlib

    overrides: dict = {"data": {"data_dir": a.data_dir}} if a.data_dir else {}
    params = load_params(a.params, overrides)
    if getattr(a, "write_suites", False):
        from pipeline.validate import write_suites

        for path in write_suites():
            print(f"wrote {path}")
        return 0
    module = importlib.import_module(STAGES[a.cmd][0])
    extra = {"reset": True} if getattr(a, "reset", False) else {}
    result = module.main(params, progress=False if a.no_progress else None, **extra)
    if isinstance(result, dict):
        print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_snapshot(a: argparse.Namespace) -> int:
    from pipeline.publish import repo_root, snapshot

    for f in snapshot(repo_root(), a.data_dir):
        print(f"tracked {f}")
    return 0


def cmd_publish(a: argparse.Namespace) -> int:
    from pipeline.publish import publish

    params = load_params(a.params, {"publish": {"push": False}} if a.no_push else {})
    res = publish(params, data_dir=a.data_dir)
    print(f"published {res.tag} ({res.images:,} images) at commit {res.commit[:10]}"
          f"{'; pushed to the DVC remote' if res.pushed else ''}")
    print(f"dataset card: {res.card}")
    return 0


def cmd_pull(a: argparse.Namespace) -> int:
    from pipeline.publish import pull

    n = pull(a.version, Path(a.out), a.repo)
    print(f"{a.out}: {n:,} images, checksums verified")
    return 0


def cmd_decide(a: argparse.Namespace) -> int:
    from pipeline import decisions

    params = load_params(a.params, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    db = decisions.Decisions(decisions.connect(
        params.data.review_db or decisions.review_url(params.data.data_dir)))
    if a.decisions_cmd == "list":
        df = db.history() if a.all else db.latest()
        print(df.to_string(index=False) if len(df) else "no decisions yet")
        return 0
    if a.decisions_cmd == "import":
        import pandas as pd

        rows = pd.read_csv(a.csv, dtype=str, keep_default_na=False).to_dict("records")
        n = db.record_many(rows)
        print(f"imported {n} decision(s) from {a.csv}")
        return 0
    db.record(a.image_id, a.decision, a.by, label=a.label, reason=a.reason, note=a.note)
    print(f"{a.image_id}: {a.decision}{' → ' + a.label if a.label else ''} by {a.by}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gemcurate", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="count", default=0)
    sub = ap.add_subparsers(dest="cmd", required=True)

    store = sub.add_parser("store", help="the demo storefront")
    ssub = store.add_subparsers(dest="store_cmd", required=True)
    s = ssub.add_parser("serve", help="serve the demo store over HTTP")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--port-file", help="write the bound port here once listening")
    s.add_argument("--rate-limit", type=float, default=20.0, help="requests/s per client")
    s.add_argument("--burst", type=int, default=5, help="token-bucket capacity per client")
    s.add_argument("--faults", type=float, default=0.02,
                   help="probability of an injected fault (slow, 503, reset) per request")
    s.add_argument("--ban-strikes", type=int, default=5,
                   help="requests inside a Retry-After window before a ban")
    s.add_argument("--ban-seconds", type=float, default=120.0)
    s.add_argument("--page-size", type=int, default=12)
    s.add_argument("--cache-dir", help="rendered-image cache (default ~/.cache/gemcurate)")
    s.add_argument("--no-cache", action="store_true", help="render every image on demand")
    _store_flags(s)
    s.set_defaults(func=cmd_store_serve)
    t = ssub.add_parser("truth", help="write the catalog's ground truth (never served)")
    t.add_argument("--out", required=True)
    _store_flags(t)
    t.set_defaults(func=cmd_store_truth)

    sc = sub.add_parser("scrape", help="crawl a store into the image store and raw.parquet")
    sc.add_argument("--params", default="params.yaml")
    sc.add_argument("--site", help="site adapter YAML (default: params scrape.site)")
    sc.add_argument("--base-url", help="override the site's base_url")
    sc.add_argument("--data-dir", help="default: params data.data_dir")
    sc.add_argument("--state-db", help="SQLAlchemy URL of the crawl state")
    sc.add_argument("--max-rate", type=float, help="cap on requests/s per host")
    sc.add_argument("--concurrency", type=int)
    sc.add_argument("--no-progress", action="store_true")
    sc.set_defaults(func=cmd_scrape)

    for name, (_, help_) in STAGES.items():
        st = sub.add_parser(name, help=help_)
        st.add_argument("--params", default="params.yaml")
        st.add_argument("--data-dir", help="default: params data.data_dir")
        st.add_argument("--no-progress", action="store_true")
        if name == "split":
            st.add_argument("--reset", action="store_true",
                            help="forget earlier assignments (a new split; breaks stability)")
        if name == "validate":
            st.add_argument("--write-suites", action="store_true",
                            help="regenerate expectations/*.json from pipeline/manifest.py and exit")
        st.set_defaults(func=cmd_stage)

    sn = sub.add_parser("snapshot", help="track the scraped raw data with DVC (dvc add)")
    sn.add_argument("--data-dir", default="data")
    sn.set_defaults(func=cmd_snapshot)
    pb = sub.add_parser("publish", help="tag dataset/vYYYY.MM.DD and push it to the DVC remote")
    pb.add_argument("--params", default="params.yaml")
    pb.add_argument("--data-dir", default="data")
    pb.add_argument("--no-push", action="store_true")
    pb.set_defaults(func=cmd_publish)
    pl = sub.add_parser("pull", help="get a published dataset version and verify its checksums")
    pl.add_argument("--version", required=True, help="YYYY.MM.DD[.N] or the full tag")
    pl.add_argument("--out", required=True)
    pl.add_argument("--repo", help="git URL or path of the repository (default: this one)")
    pl.set_defaults(func=cmd_pull)

    de = sub.add_parser("decide", help="record an annotator decision for one image")
    de.add_argument("image_id")
    de.add_argument("decision", choices=["accept", "reject", "relabel"])
    de.add_argument("--label", help="new label (relabel only)")
    de.add_argument("--by", required=True, help="who decided")
    de.add_argument("--reason", help="the review_reason this answers")
    de.add_argument("--note")
    de.add_argument("--params", default="params.yaml")
    de.add_argument("--data-dir")
    de.set_defaults(func=cmd_decide, decisions_cmd="decide")
    ds = sub.add_parser("decisions", help="list or import annotator decisions")
    dsub = ds.add_subparsers(dest="decisions_cmd", required=True)
    dl = dsub.add_parser("list", help="decisions in force (--all: the full history)")
    dl.add_argument("--all", action="store_true")
    di = dsub.add_parser("import", help="append decisions from a CSV "
                         "(image_id,decision,label,reviewer[,decided_at,reason,note])")
    di.add_argument("csv")
    for x in (dl, di):
        x.add_argument("--params", default="params.yaml")
        x.add_argument("--data-dir")
        x.set_defaults(func=cmd_decide)

    d = sub.add_parser("demo", help="the main job on the bundled storefront: serve, scrape, "
                       "dvc repro, publish")
    d.add_argument("--params", default="params.yaml")
    d.add_argument("--data-dir", default="data", help="the DVC pipeline runs only on data/")
    d.add_argument("--scrape-only", action="store_true", help="stop after the scrape")
    d.add_argument("--no-publish", action="store_true", help="run the pipeline, do not tag/push")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--rate-limit", type=float, default=20.0)
    d.add_argument("store_args", nargs="*", help="more `store serve` flags, after --")
    d.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    level = logging.WARNING - 10 * min(a.verbose, 2)
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pipeline").setLevel(max(level - 10, logging.DEBUG) if a.verbose else
                                           logging.INFO if a.cmd in ("store", "publish", *STAGES) else
                                           logging.WARNING)
    try:
        return int(a.func(a) or 0)
    except ConfigError as exc:
        print(f"gemcurate: configuration error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"gemcurate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
