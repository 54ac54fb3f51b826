#!/usr/bin/env bash
# A short check on a machine with a GPU: device, mixed precision, images/s of the frozen
# forward pass, a fine-tuning step and inference (random images, no dataset needed).
#   bash bench/gpu_check.sh            # after bash scripts/bootstrap.sh
# On a GPU install tensorflow[and-cuda] in place of tensorflow-cpu first:
#   .venv/bin/pip uninstall -y tensorflow-cpu && .venv/bin/pip install 'tensorflow[and-cuda]'
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import tensorflow as tf; print('TensorFlow', tf.__version__, 'GPUs:', tf.config.list_physical_devices('GPU'))"
"$PY" bench/train.py --synthetic 1024 --batch 128 --mixed-precision "$@"
