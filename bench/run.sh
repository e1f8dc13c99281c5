#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every libforksafe benchmark, without and with the shim, and writes bench/RESULTS.md.
# Builds first (meson setup if there is no build directory yet). Takes about 6 minutes on an idle
# 2-core machine (more when other load makes it re-run rounds). Options are passed to
# bench/run.py, e.g. `bench/run.sh --only 1,5` or `bench/run.sh --quick` (a 1-2 min smoke run of
# the harness, written to bench/out/RESULTS-quick.md).
#   BUILD=build bench/run.sh [run.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD"
mkdir -p bench/out
if ! meson compile -C "$BUILD" >bench/out/compile.log 2>&1; then
    tail -30 bench/out/compile.log >&2
    echo "bench/run.sh: build failed (full log: bench/out/compile.log)" >&2
    exit 1
fi
exec /usr/bin/python3 bench/run.py --build-dir "$BUILD" "$@"
