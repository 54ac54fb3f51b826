"""Where a gemcurate project is: the folder that holds ``params.yaml`` and ``dvc.yaml``.

Like git and DVC, gemcurate finds its project from the working directory upwards;
relative paths in ``params.yaml`` (``data/``, ``sites/…``, ``expectations/``) are
relative to that folder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pipeline.core.errors import UserError

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


class UnusableFolder(UserError, OSError):
    """A folder option names something gemcurate cannot use; the message says which and why."""


def usable_folder(path: str | Path, what: str = "data.data_dir (--data-dir)",
                  write: bool = True) -> Path:
    """``path`` as a folder gemcurate can use, made if missing; else one sentence why not.

    Raises:
        UnusableFolder: It is a file, cannot be made, or cannot be written (with ``write``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UnusableFolder(f"{what} {p}: a file, not a folder; point it at a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file somewhere above it
        raise UnusableFolder(f"{what} {p}: a part of the path is a file, not a folder") from None
    except PermissionError:
        raise UnusableFolder(f"{what} {p}: cannot be created (permission denied in "
                             f"{_existing_parent(p)}); choose a folder you can write") from None
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise UnusableFolder(f"{what} {p}: cannot be created ({exc.strerror})") from None
        raise
    if write and not os.access(p, os.W_OK | os.X_OK):
        raise UnusableFolder(f"{what} {p}: not writable by this user; choose a folder you can "
                             "write, or change its permissions")
    return p


def _existing_parent(p: Path) -> Path:
    for d in (p, *p.parents):
        if d.exists():
            return d
    return p
