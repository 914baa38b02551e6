#!/usr/bin/env bash
# Set up and run the whole test suite (what CI runs). Installs Debian's ImageJ, Xvfb, Groovy and grpc-java when missing
# (needs root or sudo), creates .venv with the dev, sam, imagej and export extras, checks lint and generated stubs, runs pytest.
# Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES="imagej xvfb xauth groovy protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java libnetty-java libperfmark-java libprotobuf-java libguava-java libgeronimo-annotation-1.3-spec-java"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
scripts/setup.sh dev,sam,imagej,export
.venv/bin/ruff check .
.venv/bin/python scripts/gen_protos.py --check
# two workers: the suite alone keeps about one core busy (ImageJ/JVM start-up, servers, subprocesses);
# ImageJ and Java client tests share one worker (tests/conftest.py)
exec .venv/bin/python -m pytest -q -ra --durations=30 -n 2 --dist loadgroup "$@"
