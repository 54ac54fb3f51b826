#!/usr/bin/env bash
# The test command: lint, then the whole suite (unit → slices → end to end).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -ra "$@"
