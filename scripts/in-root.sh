#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a command inside a root made by make-roots.sh (as root):
#
#   scripts/in-root.sh [--preload LIB] [--rw PATH]... [--ro PATH]... NAME -- CMD [ARGS...]
#
# In a private mount namespace (unshare -m) it mounts /proc, a fresh tmpfs on /tmp and /dev/shm,
# the host's /dev, and binds this checkout read-only at its own path, so the host's paths
# (build/lib/libforksafe.so, tests/...) are the same inside; --rw/--ro bind more host paths at
# their own paths (a build directory or log directory the command writes to: --rw). Then it
# chroots and runs CMD. All mounts belong to the namespace and vanish with it: nothing stays
# mounted on the host. The mounts write nothing into the root but empty mount points; CMD runs as
# root and could, so leave the root alone (it is a cache shared by every checkout).
# Environment: reset (PATH is the root's default, HOME=/root, LANG=C.UTF-8); passed through: TERM,
# TZ, LC_*, PYTHON*, FORKSAFE_* and LD_PRELOAD. CMD loads LD_PRELOAD (or --preload LIB), the host
# tools on the way do not; only this script's own shell does, if LD_PRELOAD was set when it started.
# Exit status: CMD's (128+N if a signal N ended it); 77 if the root is absent or we are not root.
set -euo pipefail
if [ -n "${LD_PRELOAD+x}" ]; then IN_ROOT_PRELOAD=$LD_PRELOAD; unset LD_PRELOAD; fi
checkout=$(cd "$(dirname "$0")/.." && pwd -P)
ROOTS_DIR=${FORKSAFE_ROOTS_DIR:-/var/tmp/forksafe-roots}
usage() { echo "usage: $0 [--preload LIB] [--rw PATH]... [--ro PATH]... NAME -- CMD [ARGS...]" >&2; exit 2; }

binds=("ro:$checkout")
while [ $# -gt 0 ]; do
  case $1 in
    --rw|--ro) [ $# -ge 2 ] || usage; binds+=("${1#--}:$(cd "$2" && pwd -P)"); shift 2;;
    --preload) [ $# -ge 2 ] || usage; IN_ROOT_PRELOAD=$2; shift 2;;
    -*) usage;;
    *) break;;
  esac
done
if [ $# -lt 3 ] || [ "$2" != -- ]; then usage; fi
name=$1; shift 2
root=$ROOTS_DIR/$name
[ -f "$root/.forksafe-root" ] || { echo "in-root: no root '$name' in $ROOTS_DIR (scripts/make-roots.sh makes it)" >&2; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "in-root: needs root (unshare -m, chroot)" >&2; exit 77; }

# The environment CMD gets. The preload travels under another name, set again by the last shell.
envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
while IFS= read -r -d '' kv; do
  case ${kv%%=*} in TERM|TZ|LC_*|PYTHON*|FORKSAFE_*) envs+=("$kv");; esac
done < <(env -0)
if [ -n "${IN_ROOT_PRELOAD+x}" ]; then envs+=("IN_ROOT_PRELOAD=$IN_ROOT_PRELOAD"); fi

# Inside the namespace: $1 root, then binds up to "--", then CMD. The binds are made after the
# tmpfs /tmp so a host path under /tmp is visible inside too.
# shellcheck disable=SC2016
exec unshare -m --propagation private /bin/sh -ec '
root=$1; shift
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs -o mode=1777,size=1g tmpfs "$root/dev/shm"
mount -t tmpfs -o mode=1777,size=4g tmpfs "$root/tmp"
while [ "$1" != -- ]; do
  mode=${1%%:*} path=${1#*:}; shift
  mkdir -p "$root$path"
  mount --bind "$path" "$root$path"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$path"; fi
done
shift
exec chroot "$root" /usr/bin/env -i "$@"
' in-root "$root" "${binds[@]}" -- "${envs[@]}" \
  /bin/sh -c 'if [ -n "${IN_ROOT_PRELOAD+x}" ]; then export LD_PRELOAD="$IN_ROOT_PRELOAD"; unset IN_ROOT_PRELOAD; fi; exec "$@"' \
  in-root "$@"
