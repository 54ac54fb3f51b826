#!/usr/bin/env bash
# The test command: lint, then the whole suite (unit → slices → end to end), with the 30
# slowest tests and the CPU seconds of each module listed at the end. Test files are spread
# over three workers (a module's tests stay together, sharing its fixtures): on two cores the
# end-to-end tests spend much of their time waiting on schedulers, stores and subprocesses, so
# three overlap better than two (four measured no faster: 13 min 40 s against 13 min 10 s).
# The modules go out in tests/conftest.py's order, the longest first: pytest-xdist otherwise
# sorts them by their number of tests, which sent the Celery module (2 tests, 4 minutes) out
# at minute 8 and left it running alone on one core at the end (--no-loadscope-reorder).
#   bash scripts/test.sh            everything (what CI runs)
#   bash scripts/test.sh --fast     the edit–test loop: unit and slice tests (not the ones
#                                   marked slow), on three workers too
# Further arguments go to pytest (a file, -k EXPR, -x …).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# one compute thread per library in every test process (what is set already wins): three
# workers already fill two cores, and the thread pools of numpy's and scipy's OpenBLAS and of
# TensorFlow, spinning while they wait for a core, only take it from another worker
# no DVC usage-analytics daemon after each of the suite's few hundred `dvc` calls (half a
# CPU-second each, and the network they try is not there)
export DVC_NO_ANALYTICS=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" \
  MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" TF_NUM_INTRAOP_THREADS="${TF_NUM_INTRAOP_THREADS:-1}"
.venv/bin/ruff check .
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -ra -m "not slow" -n 3 --dist loadfile --no-loadscope-reorder \
    --durations=15 "$@"
fi
exec .venv/bin/python -m pytest -ra -n 3 --dist loadfile --no-loadscope-reorder --durations=30 "$@"
