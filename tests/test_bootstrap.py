"""scripts/dev.lock, which scripts/bootstrap.sh installs a new .venv from: every requirement of
the [dev] install (gemcurate's own, its extras, the dev tools) is pinned there at a version
pyproject.toml allows, and nothing is pinned twice."""

from __future__ import annotations

import re
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "scripts" / "dev.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        assert m, f"scripts/dev.lock: not a pin: {line!r}"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"scripts/dev.lock pins {name} twice"
        pins[name] = m.group(2)
    return pins


def _dev_requirements() -> list[Requirement]:
    """gemcurate's dependencies and those of the extras [dev] pulls in, transitively."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], ["dev"], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in extras[extra]:
            r = Requirement(text)
            if canonicalize_name(r.name) == "gemcurate":
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


def test_the_dev_lock_pins_every_requirement_at_an_allowed_version():
    pins, env = _lock(), default_environment()
    wrong = []
    for r in _dev_requirements():
        if r.marker is not None and not r.marker.evaluate(env):
            continue
        got = pins.get(canonicalize_name(r.name))
        if got is None or not r.specifier.contains(got, prereleases=True):
            wrong.append(f"{r} (locked: {got})")
    assert not wrong, "scripts/dev.lock does not fit pyproject.toml; run `pip install -e .[dev]` " \
                      f"and scripts/lock.sh: {wrong}"
    assert "gemcurate" not in pins and "pip" not in pins  # installed by bootstrap itself
