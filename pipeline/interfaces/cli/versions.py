"""Dataset versions: ``gemcurate snapshot``, ``publish`` and ``pull``."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.paths import find_project_root
from pipeline.interfaces.cli.common import (
    project_options,
    project_params,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    sn = sub.add_parser("snapshot", help="track the scraped raw data with DVC (dvc add)")
    project_options(sn, "data")
    sn.set_defaults(func=cmd_snapshot)
    pb = sub.add_parser("publish", help="tag dataset/vYYYY.MM.DD and push it to the DVC remote")
    project_options(pb, "data")
    pb.add_argument("--no-push", action="store_true")
    pb.set_defaults(func=cmd_publish)
    pl = sub.add_parser("pull", help="get a published dataset version and verify its checksums")
    pl.add_argument("--version", required=True, help="YYYY.MM.DD[.N] or the full tag")
    pl.add_argument("--out", required=True)
    pl.add_argument("--repo", help="git URL or path of the repository (default: this one)")
    pl.set_defaults(func=cmd_pull)


def cmd_snapshot(a: argparse.Namespace) -> int:
    from pipeline.project import refresh_lock
    from pipeline.stages.publish import repo_root, snapshot

    refresh_lock()
    store = project_params(a).data.store_root
    for f in snapshot(repo_root(), a.data_dir, store if store and "://" in store else None):
        print(f"tracked {f}")
    return 0


def cmd_publish(a: argparse.Namespace) -> int:
    from pipeline.project import require_current_lock
    from pipeline.stages.publish import publish

    params = project_params(a, {"publish": {"push": False}} if a.no_push else {})
    require_current_lock(find_project_root())
    res = publish(params, data_dir=a.data_dir)
    print(f"published {res.tag} ({res.images:,} images) at commit {res.commit[:10]}"
          f"{'; pushed to the DVC remote' if res.pushed else ''}")
    print(f"dataset card: {res.card}")
    return 0


def cmd_pull(a: argparse.Namespace) -> int:
    from pipeline.stages.publish import pull

    n = pull(a.version, Path(a.out), a.repo)
    print(f"{a.out}: {n:,} images, checksums verified")
    return 0
