#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs gemcurate with its dev tools, once.
#
# A new .venv is installed from scripts/dev.lock (every package pinned, scripts/lock.sh writes
# it) by three pip processes at once, without resolving: 66 s instead of 2 min on two cores,
# where one pip process unpacks one wheel after another on one core. Then gemcurate itself
# (editable, no dependencies) and `pip check`. If any of that fails (a lock that no longer fits
# pyproject.toml, a pin the index lacks), the plain `pip install -e ".[dev]"` resolves and
# installs what is missing, as it always did.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.gemcurate-installed
lock=scripts/dev.lock

from_lock() {
  [ -f "$lock" ] || return 1
  local parts pids=() ok=0
  parts=$(mktemp -d)
  grep '==' "$lock" | awk -v d="$parts" '{ print > (d "/part" (NR % 3)) }'
  for part in "$parts"/part*; do
    .venv/bin/python -m pip install -q --no-deps -r "$part" & pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || ok=1; done
  rm -rf "$parts"
  [ "$ok" = 0 ] && .venv/bin/python -m pip install -q --no-deps -e . && .venv/bin/python -m pip check >/dev/null
}

if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || { [ -f "$lock" ] && [ "$lock" -nt "$stamp" ]; }; then
  .venv/bin/python -m pip install -q --upgrade pip
  if [ ! -f "$stamp" ] && from_lock; then
    echo "bootstrap: .venv installed from $lock"
  else
    [ -f "$stamp" ] || echo "bootstrap: $lock did not install cleanly; resolving from pyproject.toml"
    .venv/bin/python -m pip install -q -e ".[dev]"
  fi
  touch "$stamp"
fi
