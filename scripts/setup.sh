#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install fosgate-client (clients/python) and fosgate with the given
# extras, e.g. `scripts/setup.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
extras=${1:-}
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install -q -e clients/python -e ".[$extras]"
else
  .venv/bin/python -m pip install -q -e clients/python -e .
fi
