"""``gemcurate demo``: the main job on the bundled storefront."""

from __future__ import annotations

import argparse

from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="the main job on the bundled storefront: serve, scrape, "
                       "dvc repro, publish")
    project_options(d, "data")
    d.add_argument("--scrape-only", action="store_true", help="stop after the scrape")
    d.add_argument("--no-publish", action="store_true", help="run the pipeline, do not tag/push")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--rate-limit", type=float, default=20.0)
    d.add_argument("store_args", nargs="*", help="more `store serve` flags, after --")
    d.set_defaults(func=cmd_demo)


def cmd_demo(a: argparse.Namespace) -> int:
    from pipeline.interfaces.demo import run_demo

    project_params(a)
    store_args = ["--seed", str(a.seed), "--rate-limit", str(a.rate_limit), *a.store_args]
    return run_demo(a.params, a.data_dir, store_args, scrape_only=a.scrape_only,
                    publish=not a.no_publish)
