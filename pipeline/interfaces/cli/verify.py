"""``gemcurate verify``: check a whole data folder and say what is damaged."""

from __future__ import annotations

import argparse
import sys

from pipeline.core.text import printable
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    vf = sub.add_parser("verify", help="check a whole data folder (store, manifests, caches, "
                                       "ledger, dataset shards) and say what is damaged")
    project_options(vf)
    vf.add_argument("--no-progress", action="store_true")
    vf.set_defaults(func=cmd_verify)


def cmd_verify(a: argparse.Namespace) -> int:
    from pipeline.project.verify import verify_data_dir

    params = project_params(a, {"data": {"data_dir": a.data_dir}} if a.data_dir else {})
    report = verify_data_dir(params, progress=not a.no_progress and sys.stderr.isatty())
    for line in report.lines():
        print(printable(line))
    return 0 if report.ok else 1
