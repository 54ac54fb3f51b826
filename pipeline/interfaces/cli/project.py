"""The project's generated files: ``gemcurate lock`` and ``gemcurate dvc-yaml``."""

from __future__ import annotations

import argparse

from pipeline.core.errors import UserError
from pipeline.interfaces.cli.common import (
    project_root,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    lk = sub.add_parser("lock", help="record the code each stage runs (.gemcurate/code.yaml)")
    lk.add_argument("--check", action="store_true", help="exit 1 if the lock is stale")
    lk.set_defaults(func=cmd_lock, in_project=True)
    dy = sub.add_parser("dvc-yaml", help="write dvc.yaml from the stage registry")
    dy.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml differs")
    dy.add_argument("--mode", choices=["files", "lock"],
                    help="code as file deps (a gemcurate checkout) or the code lock (default: "
                    "by kind of project)")
    dy.add_argument("--training", action=argparse.BooleanOptionalAction, default=None,
                    help="with (or without) the train and evaluate stages (default: as the "
                         "current dvc.yaml has them)")
    dy.set_defaults(func=cmd_dvc_yaml, in_project=True)


def cmd_lock(a: argparse.Namespace) -> int:
    from pipeline.project import LOCK, stale_stages, write_lock

    root = project_root()
    if a.check:
        stale = stale_stages(root)
        print(f"{LOCK}: " + (f"stale for {', '.join(stale)}" if stale else "current"))
        return 1 if stale else 0
    changed = write_lock(root)
    print(f"{LOCK}: " + (f"updated ({', '.join(changed)} changed)" if changed else "current"))
    return 0


def cmd_dvc_yaml(a: argparse.Namespace) -> int:
    from pipeline.project import dvc_yaml_mode, dvc_yaml_trains, render_dvc_yaml, training_available

    root = project_root()
    mode = a.mode or dvc_yaml_mode(root)
    training = dvc_yaml_trains(root) if a.training is None else a.training
    if training and a.training and not training_available():
        raise UserError("--training: TensorFlow and Keras are not installed here; "
                        "pip install 'gemcurate[train]' first")
    text = render_dvc_yaml(mode, training)
    path = root / "dvc.yaml"
    if a.check:
        same = path.exists() and path.read_text() == text
        print(f"dvc.yaml: {'current' if same else 'differs from pipeline/stages/registry.py'} ({mode} mode)")
        return 0 if same else 1
    from pipeline.core.atomic import write_text

    write_text(path, text)
    print(f"wrote {path} ({mode} mode)")
    return 0
