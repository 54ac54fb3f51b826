"""The command-line tools gemcurate runs (dvc, airflow, gemcurate itself).

The one that sits next to this interpreter wins (a project's or a worker's virtual
environment, where PATH may not point), else the one on PATH.
"""

from __future__ import annotations

import sys
from pathlib import Path


def tool(name: str) -> list[str]:
    """``[path]`` of ``name`` beside ``sys.executable``, else ``[name]`` (found on PATH)."""
    exe = Path(sys.executable).with_name(name)
    return [str(exe)] if exe.exists() else [name]
