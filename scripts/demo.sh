#!/usr/bin/env bash
# The main job on the embedded default: bundled storefront → polite scrape → summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/gemcurate demo "$@"
