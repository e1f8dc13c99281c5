#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Quick start, part 2: install, build, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
meson test -C build --print-errorlogs --num-processes "${FORKSAFE_TEST_JOBS:-4}" "$@"
