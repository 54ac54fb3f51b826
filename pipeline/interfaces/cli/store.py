"""``gemcurate store serve|truth``: the bundled demo storefront."""

from __future__ import annotations

import argparse
import json

from pipeline.core.config import PLATFORMS, ConfigError
from pipeline.demo.options import add_catalog_flags, catalog_options


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    s.add_argument("--dead-links", type=int, default=0, metavar="N",
                   help="a store that never fully answers: the first category lists N deleted "
                        "products (404) and N products show one image that always answers 500 "
                        "(demo layout)")
    s.add_argument("--layout", choices=PLATFORMS, default="demo",
                   help="serve the catalog with this platform's URLs, HTML and JSON (same images)")
    s.add_argument("--cache-dir", help="rendered-image cache (default ~/.cache/gemcurate)")
    s.add_argument("--no-cache", action="store_true", help="render every image on demand")
    add_catalog_flags(s)
    s.set_defaults(func=cmd_store_serve)
    t = ssub.add_parser("truth", help="write the catalog's ground truth (never served)")
    t.add_argument("--out", required=True)
    t.add_argument("--layout", choices=PLATFORMS, default="demo",
                   help="the URLs of this layout (the same catalog otherwise)")
    add_catalog_flags(t)
    t.set_defaults(func=cmd_store_truth)


def cmd_store_serve(a: argparse.Namespace) -> int:
    from pipeline.demo.server import ServerOptions, default_cache_dir, serve

    if a.rate_limit <= 0:
        raise ConfigError("--rate-limit: must be positive")
    if not 0 <= a.faults <= 1:
        raise ConfigError("--faults: must be a probability in [0, 1]")
    if a.dead_links < 0 or (a.dead_links and a.layout != "demo"):
        raise ConfigError("--dead-links: a count of 0 or more, with the demo layout")
    opts = ServerOptions(rate_limit=a.rate_limit, burst=a.burst, faults=a.faults,
                         ban_strikes=a.ban_strikes, ban_seconds=a.ban_seconds,
                         page_size=a.page_size, fault_seed=a.seed, layout=a.layout,
                         dead_links=a.dead_links,
                         cache_dir=None if a.no_cache else (a.cache_dir or default_cache_dir()))
    serve(catalog_options(a), opts, a.host, a.port, a.port_file)
    return 0


def cmd_store_truth(a: argparse.Namespace) -> int:
    from pipeline.demo.server import write_truth

    truth = write_truth(catalog_options(a), a.out, a.layout)
    junk: dict[str, int] = {}
    for im in truth["images"]:
        junk[str(im["junk"])] = junk.get(str(im["junk"]), 0) + 1
    print(f"wrote {a.out}: {len(truth['products'])} products, {len(truth['images'])} images, "
          f"junk {json.dumps(junk)}")
    return 0
