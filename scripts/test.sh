#!/usr/bin/env bash
# The test command: lint, then the whole suite (unit → slices → end to end), with the 30
# slowest tests listed at the end.
#   bash scripts/test.sh            everything (what CI runs)
#   bash scripts/test.sh --fast     the edit–test loop: unit and slice tests (not the ones
#                                   marked slow), on every core
# Further arguments go to pytest (a file, -k EXPR, -x …).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -ra -m "not slow" -n auto --dist loadfile --durations=15 "$@"
fi
exec .venv/bin/python -m pytest -ra --durations=30 "$@"
