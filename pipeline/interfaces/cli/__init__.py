"""The ``gemcurate`` command line: a subcommand per stage, plus ``init``, ``store`` and friends.

Commands that work on a project (scrape, the stages, snapshot, publish, decide …)
find it from the working directory upwards, like git and DVC, and run in its root;
outside a project they say so and name ``gemcurate init``.

Example:
    $ gemcurate init ~/gems && cd ~/gems
    $ gemcurate store serve --port 8000 &
    $ gemcurate scrape && dvc repro
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.core.config import ConfigError
from pipeline.core.errors import ExitCode, UserError
from pipeline.core.text import printable
from pipeline.interfaces.cli import (
    airflow,
    decisions,
    demo,
    init,
    predict,
    project,
    review,
    scrape,
    stages,
    store,
    verify,
    versions,
)
from pipeline.interfaces.cli.common import NotInProject, enter_project
from pipeline.stages.registry import STAGES

logger = logging.getLogger("gemcurate")

#: the command modules, in the order ``gemcurate --help`` lists them; each adds its own parser
COMMANDS = (init, store, scrape, stages, verify, versions, predict, project, decisions, review,
            airflow, demo)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gemcurate", description=__doc__.splitlines()[0])
    ap.add_argument("-v", "--verbose", action="count", default=0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    level = logging.WARNING - 10 * min(a.verbose, 2)
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chatty = ("store", "publish", *(s.name for s in STAGES))
    logging.getLogger("pipeline").setLevel(max(level - 10, logging.DEBUG) if a.verbose else
                                           logging.INFO if a.cmd in chatty else logging.WARNING)
    try:
        enter_project(a)
        return int(a.func(a) or 0)
    except ConfigError as exc:
        print(f"gemcurate: configuration error: {printable(exc, keep_newlines=True)}", file=sys.stderr)
        return ExitCode.USAGE
    except NotInProject as exc:
        print(f"gemcurate: {printable(exc)}", file=sys.stderr)
        return ExitCode.USAGE
    except UserError as exc:
        print(f"gemcurate: {printable(exc, keep_newlines=True)}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        print("gemcurate: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # one line for people; the traceback with -v
        if a.verbose:
            raise
        text = printable(" ".join(str(exc).split())[:500])
        print(f"gemcurate: {type(exc).__name__}: {text} (run with -v for the traceback)",
              file=sys.stderr)
        return ExitCode.ERROR


if __name__ == "__main__":
    sys.exit(main())
