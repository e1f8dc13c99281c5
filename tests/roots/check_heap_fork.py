#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The child of a large-heap parent shares its memory as well with the shim as without it
# (heap_fork.py, in a Debian root: CPython 3.14's RLock is a PyMutex, where an earlier version of
# the shim scanned the whole heap in every child). The child's private dirty memory with the
# shim must stay within 16 MB of the run without it (timings are printed, not judged: bench/).
#   check_heap_fork.py --shim build/lib/libforksafe.so --root sid
import os

from forksafe_test import driver_args, fail, require_root, run_in_root

HERE = os.path.dirname(os.path.abspath(__file__))
SLACK_KB = 16 * 1024


def measure(root, env):
    r = run_in_root(root, ["python3", os.path.join(HERE, "heap_fork.py")], 120, env=env)
    words = r.out.split()
    if r.rc != 0 or r.hung or "CHILD_DIRTY_KB" not in words:
        fail("heap_fork.py in %s" % root, extra=r.text())
    return int(words[words.index("CHILD_DIRTY_KB") + 1]), float(words[words.index("CHILD_START_MS") + 1])


def main():
    a = driver_args("shim", "root")
    require_root(a.root)
    base_kb, base_ms = measure(a.root, {})
    shim_kb, shim_ms = measure(a.root, {"LD_PRELOAD": os.path.abspath(a.shim), "FORKSAFE_LOG": "/dev/null"})
    print("child private dirty: %d kB without the shim, %d kB with it; back in the program after %.1f ms / %.1f ms"
          % (base_kb, shim_kb, base_ms, shim_ms))
    if shim_kb > base_kb + SLACK_KB:
        fail("with the shim the child dirtied %d kB more than without: the heap is no longer shared"
             % (shim_kb - base_kb))
    print("ok: %s: a child of a 2-million-object parent shares its heap with the shim as without" % a.root)


if __name__ == "__main__":
    main()
