"""Where a gemcurate project is: the folder that holds ``params.yaml`` and ``dvc.yaml``.

Like git and DVC, gemcurate finds its project from the working directory upwards;
relative paths in ``params.yaml`` (``data/``, ``sites/…``, ``expectations/``) are
relative to that folder.
"""

from __future__ import annotations

from pathlib import Path

MARKERS = ("params.yaml", "dvc.yaml")


def find_project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    both ``params.yaml`` and ``dvc.yaml``, or ``None``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if all((d / m).is_file() for m in MARKERS):
            return d
    return None


def project_root() -> Path:
    """:func:`find_project_root`, or the working directory outside any project."""
    return find_project_root() or Path.cwd()
