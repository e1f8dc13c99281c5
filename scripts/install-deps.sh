#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs what libforksafe's build, demo and tests need on Debian 12 (as root). Idempotent.
# libasan8 and libubsan1 (gcc's sanitizer runtimes, which gcc pulls in anyway): the sanitizer run,
# scripts/test-sanitize.sh.
set -euo pipefail
pkgs=(gcc libc6-dev meson ninja-build pkg-config python3 gunicorn uwsgi-core uwsgi-plugin-python3 python3-pymongo python3-setproctitle
      # scripts/test-sanitize.sh: gcc's AddressSanitizer and UndefinedBehaviorSanitizer runtimes
      libasan8 libubsan1
      # tests/deploy: the Debian package (dpkg-buildpackage, dh), man page lint and rendering,
      # systemd-analyze verify for the drop-in
      debhelper dpkg-dev mandoc man-db systemd
      # tests/green: green threads (gevent, eventlet)
      python3-gevent python3-eventlet)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
