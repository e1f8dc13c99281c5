#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Quick start, part 1: install, build, and show a Python program that deadlocks without the shim
# and finishes with it, with the report.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
py=/usr/bin/python3
echo
echo "== without libforksafe: a metrics thread holds its lock while a multiprocessing pool forks"
if timeout 30 env -u LD_PRELOAD $py examples/metrics_pool.py; then
  echo "(finished -- unexpected)"
else
  echo "== hung: the pool's workers wait forever for a lock nobody will release (the example gives up)"
fi
echo
echo "== with LD_PRELOAD=build/lib/libforksafe.so"
timeout 30 env LD_PRELOAD="$PWD/build/lib/libforksafe.so" $py examples/metrics_pool.py
