#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Makes the Debian root filesystems the tests run current Pythons in (as root), once each:
#
#   scripts/make-roots.sh [NAME...]        NAME: trixie (CPython 3.13), sid (3.14); default both
#
# Owns $FORKSAFE_ROOTS_DIR (default /var/tmp/forksafe-roots): NAME/ is a root made by debootstrap
# from the Debian mirror this machine's apt uses, with the packages below; NAME/.forksafe-root is
# its stamp (suite, package list, versions, seconds taken). A root is built in a temporary
# directory and renamed into place only when complete, stamp included: a root without a stamp, or
# whose stamp lists other packages, is made again; an interrupted run leaves no half root under a
# real name. Idempotent: a complete root is left alone. Exit status: 0 done, 77 the registry (or
# root privileges) is not to be had here, so tests that need a root skip; 1 anything else.
set -euo pipefail

ROOTS_DIR=${FORKSAFE_ROOTS_DIR:-/var/tmp/forksafe-roots}
# What every root holds. Changing this list remakes the roots (the stamp records it).
PACKAGES="python3 gunicorn uwsgi-core uwsgi-plugin-python3 python3-gevent python3-setproctitle procps strace"
# And CPython's own test suite for the root's python3 (libpython3.X-testsuite: the tests/cpython
# comparison runs there too).
TESTSUITE='libpython$(python3 -c "import sys; print(\"%d.%d\" % sys.version_info[:2])")-testsuite'
SKIP=77

skip() { echo "make-roots: $*; the roots are not made (tests that need them skip)" >&2; exit $SKIP; }
die() { echo "make-roots: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot)"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(trixie sid)
for n in "${names[@]}"; do
  case $n in trixie|sid) ;; *) die "unknown root '$n' (known: trixie sid)";; esac
done

stamp_line() { echo "packages: $PACKAGES + the test suite of python3"; }
complete() { [ -f "$ROOTS_DIR/$1/.forksafe-root" ] && grep -qxF "$(stamp_line)" "$ROOTS_DIR/$1/.forksafe-root"; }

todo=()
for n in "${names[@]}"; do complete "$n" || todo+=("$n"); done
[ ${#todo[@]} -gt 0 ] || { echo "make-roots: up to date: ${names[*]} in $ROOTS_DIR"; exit 0; }

# $FORKSAFE_DEBIAN_MIRROR, else the mirror this machine's apt uses (deb822 or one-line sources),
# else debootstrap's default.
mirror=${FORKSAFE_DEBIAN_MIRROR:-}
[ -n "$mirror" ] || mirror=$(sed -n 's|^URIs: *\([^ ]*/debian\)/\?$|\1|p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's|^deb \+\(\[[^]]*\] \+\)\?\([^ ]*/debian\)/\? .*|\2|p' \
                             /etc/apt/sources.list 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(sed -n 's|^default_mirror \(.*\)|\1|p' /usr/share/debootstrap/functions 2>/dev/null | head -1)
[ -n "$mirror" ] || die "cannot tell which Debian mirror to use"

if ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  timeout 600 apt-get update -qq || skip "apt-get update failed: Debian's registry is unreachable"
  timeout 600 apt-get install -y -qq debootstrap >/dev/null || skip "cannot install debootstrap"
fi
reachable() { timeout 60 wget -q -T 20 -t 2 -O /dev/null "$mirror/dists/$1/InRelease"; }

mkdir -p "$ROOTS_DIR"
exec 9>"$ROOTS_DIR/.lock"   # one maker at a time (tests may start several)
flock -w 1800 9 || die "another make-roots.sh held $ROOTS_DIR/.lock for 30 minutes"

# Removes a directory tree, refusing if anything is mounted under it.
remove_tree() {
  [ -e "$1" ] || return 0
  if awk -v p="$1/" '{ if (index($2 "/", p) == 1) bad = 1 } END { exit !bad }' /proc/mounts; then
    die "refusing to remove $1: something is mounted under it"
  fi
  rm -rf --one-file-system "$1"
}

# Runs a command chrooted into $1 with /proc mounted, in a private mount namespace: the mount
# goes away with the namespace.
in_new_root() {
  local root=$1; shift
  # shellcheck disable=SC2016
  unshare -m --propagation private sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' \
    "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"
}

make_root() {
  local name=$1 start tmp final=$ROOTS_DIR/$1
  start=$(date +%s)
  for old in "$ROOTS_DIR"/.tmp-"$name".*; do remove_tree "$old"; done  # an interrupted run's
  reachable "$name" || skip "Debian's registry is unreachable ($mirror, suite $name)"
  tmp=$(mktemp -d "$ROOTS_DIR/.tmp-$name.XXXXXX")
  chmod 755 "$tmp"
  echo "make-roots: debootstrap $name into $tmp (log: $tmp.log)"
  # debootstrap verifies the Release signature but not its Valid-Until, so an expired sid
  # Release is fine here; apt inside the root is told below.
  # In its own mount namespace: the /proc and /sys it mounts in the target vanish even if killed.
  if ! timeout 1800 unshare -m --propagation private debootstrap --variant=minbase "$name" "$tmp" "$mirror" >"$tmp.log" 2>&1; then
    reachable "$name" || skip "Debian's registry became unreachable during debootstrap"
    tail -5 "$tmp.log" >&2; die "debootstrap $name failed (log: $tmp.log)"
  fi
  # sid's Release is often past Valid-Until on mirrors and snapshots; no daemon starts in a root.
  echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99forksafe"
  printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
  # shellcheck disable=SC2086
  if ! { in_new_root "$tmp" apt-get update -qq &&
         in_new_root "$tmp" apt-get install -y -qq --no-install-recommends $PACKAGES &&
         in_new_root "$tmp" sh -c "apt-get install -y -qq --no-install-recommends $TESTSUITE" &&
         in_new_root "$tmp" apt-get clean; } >>"$tmp.log" 2>&1; then
    reachable "$name" || skip "Debian's registry became unreachable during apt-get install"
    tail -5 "$tmp.log" >&2; die "installing the packages into $name failed (log: $tmp.log)"
  fi
  {
    echo "suite: $name"
    echo "mirror: $mirror"
    stamp_line
    echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s"
    echo "size: $(du -sx --block-size=1M "$tmp" | cut -f1) MiB"
    in_new_root "$tmp" python3 -c 'import sys, platform; print("python3:", sys.version.split()[0]); print("glibc:", platform.libc_ver()[1])'
    # shellcheck disable=SC2016
    in_new_root "$tmp" dpkg-query -W -f='${Package}: ${Version}\n' gunicorn uwsgi-core python3-gevent
  } >"$tmp/.forksafe-root"
  if [ -e "$final" ]; then mv -T "$final" "$tmp.old"; fi
  mv -T "$tmp" "$final"
  remove_tree "$tmp.old"; rm -f "$tmp.log"
  echo "make-roots: made $final:"; sed 's/^/  /' "$final/.forksafe-root"
}

for n in "${todo[@]}"; do complete "$n" || make_root "$n"; done
