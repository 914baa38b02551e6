#!/usr/bin/env bash
# Create bench/peers/stardist/.venv (gitignored) with the legacy Keras 2 stack StarDist 2D needs,
# kept out of fosgate's own environment (Keras 3 / TensorFlow 2.21).
#   bash bench/peers/stardist/setup.sh            # idempotent; PYTHON=python3.11 by default
# Pins: tensorflow-cpu 2.15.1 (last release with Keras 2 as tf.keras), numpy < 2 (TF 2.15 is built
# against numpy 1.x), stardist 0.9.x + csbdeep 0.8.x (support TF 2.x / Keras 2). Nothing is downloaded
# at run time: the net is trained from scratch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3.11}"
if [ ! -x "$here/.venv/bin/python" ]; then
  "$py" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install -q --upgrade pip
"$here/.venv/bin/python" -m pip install -q "tensorflow-cpu==2.15.1" "numpy<2" "stardist==0.9.2" "csbdeep==0.8.2" \
  "scipy" "scikit-image" "tifffile" "pillow"
"$here/.venv/bin/python" -c "import stardist, csbdeep, tensorflow as tf; print('stardist', stardist.__version__, 'csbdeep', csbdeep.__version__, 'tensorflow', tf.__version__)"
