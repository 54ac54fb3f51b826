#!/usr/bin/env bash
# Writes scripts/dev.lock: every package of .venv (the [dev] install), pinned. scripts/bootstrap.sh
# installs a new .venv from it in three parallel pip processes without resolving (66 s against
# 2 min for `pip install -e .[dev]` on the CI machine's two cores) and falls back to the plain
# install when the lock no longer fits pyproject.toml. Run it after changing a dependency, once
# `pip install -e ".[dev]"` has brought .venv up to date; tests/test_bootstrap.py checks the pins
# satisfy pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# every package of the [dev] install, pinned: written by scripts/lock.sh, read by"
  echo "# scripts/bootstrap.sh (tests/test_bootstrap.py checks it against pyproject.toml)"
  .venv/bin/python -m pip freeze --all --exclude-editable | grep -iv '^\(pip\|gemcurate\)==' | sort -f
} > scripts/dev.lock
echo "wrote scripts/dev.lock ($(grep -c '==' scripts/dev.lock) packages)"
