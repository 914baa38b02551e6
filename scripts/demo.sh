#!/usr/bin/env bash
# Set up and run the demo: generate a slide, label, train, predict, write all outputs (no ../shared,
# no download of data or weights). Extra arguments go to `fosgate demo` (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/fosgate demo "$@"
