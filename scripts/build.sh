#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Configures (once) and builds into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build --werror >/dev/null
meson compile -C build >/dev/null
echo "built build/lib/libforksafe.so"
