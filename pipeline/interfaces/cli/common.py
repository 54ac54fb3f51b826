"""What every command shares: finding the project, its params, the paths a user typed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.core.config import load_params
from pipeline.core.errors import UserError
from pipeline.core.paths import find_project_root

# argparse destinations that hold paths the user typed (made absolute before the CLI
# moves to the project root, so they keep meaning what they meant where they were typed)
PATH_ARGS = ("params", "data_dir", "site", "out", "csv", "port_file", "cache_dir", "catalog", "image",
             "images", "model", "embeddings", "examples", "realdata", "out_dir")


class NotInProject(UserError):
    """A project command ran outside any gemcurate project."""


def port_number(text: str) -> int:
    """A TCP port for a server option (1–65535)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (1–65535)")
    return port


def project_root() -> Path:
    root = find_project_root()
    if root is None:
        raise NotInProject(f"not inside a gemcurate project (no params.yaml and dvc.yaml in "
                           f"{Path.cwd()} or above); start one with `gemcurate init DIR`")
    return root


def project_params(a: argparse.Namespace, overrides: dict | None = None):
    """The project's params (``--params`` given explicitly works anywhere)."""
    if getattr(a, "params", None) in (None, "params.yaml") and find_project_root() is None \
            and not Path("params.yaml").exists():
        project_root()  # raises NotInProject
    from pipeline.stages.filter.checks import REGISTRY

    params = load_params(a.params, overrides)
    params.filter.check_names(REGISTRY)  # a typo'd check fails now, not at the filter stage
    return params


def enter_project(a: argparse.Namespace) -> None:
    """Run a project command from the project's root (found upwards, like git and DVC)."""
    if not getattr(a, "in_project", False):
        return
    root = find_project_root()
    if root is None or root == Path.cwd().resolve():
        return
    for name in PATH_ARGS:
        value = getattr(a, name, None)
        if isinstance(value, str) and value != "params.yaml":
            setattr(a, name, os.path.abspath(value))
        elif isinstance(value, list) and name == "images":
            setattr(a, name, [os.path.abspath(v) for v in value])
    os.chdir(root)


def project_options(p: argparse.ArgumentParser, data_dir_default: str | None = None) -> None:
    p.add_argument("--params", default="params.yaml", help="default: the project's params.yaml")
    p.add_argument("--data-dir", default=data_dir_default, help="default: params data.data_dir")
    p.set_defaults(in_project=True)
