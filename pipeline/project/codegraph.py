"""Which source files a stage runs: its import closure inside the ``pipeline`` package.

DVC reruns a stage when one of its dependencies changes, so the dependencies must
be every file whose code can change the stage's outputs: the stage module and,
transitively, every project module it imports (at module level or inside a
function). :func:`closure` computes that from the source with :mod:`ast`, without
importing anything. ``dvc.yaml`` lists it (:mod:`pipeline.project`), and
``tests/test_dvc_yaml.py`` fails naming any file it misses.

Package ``__init__.py`` files that hold only a docstring are left out: importing
them runs no code. One that holds code is part of the closure like any module.

Example:
    >>> [p.as_posix() for p in closure("pipeline.stages.split")][:3]
    ['pipeline/core/config.py', 'pipeline/core/atomic.py', 'pipeline/core/blobstore.py']
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "pipeline"
SRC = Path(__file__).resolve().parents[1]   # .../pipeline
BASE = SRC.parent                           # what module paths are relative to


def module_file(module: str) -> Path | None:
    """The source file of ``pipeline.a.b`` (``a/b.py`` or ``a/b/__init__.py``), if any."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    stem = BASE.joinpath(*parts)
    if stem.with_suffix(".py").is_file():
        return stem.with_suffix(".py")
    if (stem / "__init__.py").is_file():
        return stem / "__init__.py"
    return None


def _is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _package_inits(module: str) -> list[str]:
    """``pipeline``, ``pipeline.core`` … for ``pipeline.core.atomic``: every import runs them."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The ``pipeline.*`` modules ``module``'s source imports, anywhere in the file."""
    path = module_file(module)
    if path is None:
        return frozenset()
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from pipeline.core import atomic`` imports the submodule pipeline.core.atomic;
            # the package itself counts only for names that are not submodules (its
            # __init__ runs either way: closure_modules adds every package on the path)
            subs = {a.name for a in node.names if module_file(f"{base}.{a.name}") is not None}
            found.update(f"{base}.{n}" for n in subs)
            if len(subs) < len(node.names):
                found.add(base)
    return frozenset(m for m in found if m.split(".")[0] == PACKAGE and module_file(m))


@cache
def closure_modules(module: str) -> frozenset[str]:
    """``module`` and every ``pipeline`` module it imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(direct_imports(m))
        todo.extend(_package_inits(m))
    return frozenset(m for m in seen if module_file(m) is not None)


def closure(module: str) -> list[Path]:
    """The source files ``module`` runs, relative to the package's parent, sorted.

    Docstring-only ``__init__.py`` files are left out (see the module doc).
    """
    files = set()
    for m in closure_modules(module):
        path = module_file(m)
        assert path is not None
        if path.name == "__init__.py" and _is_docstring_only(path):
            continue
        files.add(path.relative_to(BASE))
    return sorted(files)


def digest(files: list[Path]) -> str:
    """sha256 over the files' relative names and bytes: what the code of a stage is."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.as_posix().encode() + b"\0")
        h.update((BASE / rel).read_bytes())
    return h.hexdigest()
