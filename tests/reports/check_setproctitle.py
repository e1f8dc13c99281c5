#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The main program named by its path in reports, also after setproctitle rewrote argv[0]'s
# memory: the lost thread's start routine (in the python executable itself, which Debian links
# statically with libpython) reads "0x… (/usr/bin/python3.X)", never the process title. On
# Debian's python3 here, and in the Debian roots (CPython 3.13, 3.14) when they exist.
#   check_setproctitle.py --shim build/lib/libforksafe.so [--root trixie|sid]
import os
import re
import tempfile

from forksafe_test import driver_args, fail, of, read_events, require_root, run, run_in_root, shim_env, skip

PROG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "setproctitle_fork.py")


def check(evs, where):
    forks = of(evs, "fork")
    if len(forks) != 1:
        fail("%s: one fork event" % where, evs)
    start = [t for t in forks[0]["lost_threads"] if t.get("python_name") == "worker-thread"]
    if not start or not start[0]["start"] or not re.search(r"\(/usr/bin/python3(\.\d+)?\)$", start[0]["start"]) \
            or "master" in start[0]["start"] or "xxx" in start[0]["start"]:
        fail("%s: the lost thread's start routine names /usr/bin/python3.X, not the process title" % where, evs)
    return start[0]["start"]


def main():
    a = driver_args("shim", root="")
    with tempfile.TemporaryDirectory() as tmp:
        if a.root:
            require_root(a.root)
            os.chmod(tmp, 0o777)
            env = {"LD_PRELOAD": os.path.abspath(a.shim), "FORKSAFE_FORMAT": "json",
                   "FORKSAFE_LOG": os.path.join(tmp, "log-%p.jsonl")}
            r = run_in_root(a.root, ["python3", PROG], 60, env=env, rw=[tmp])
            where = "root " + a.root
        else:
            if run(["/usr/bin/python3", "-c", "import setproctitle"], shim_env(a.shim), timeout=30).rc != 0:
                skip("python3-setproctitle is not installed")
            r = run(["/usr/bin/python3", PROG], shim_env(a.shim, tmp), timeout=60, text=True)
            where = "Debian's python3"
        if r.rc != 0 or r.hung:
            fail("%s: the program failed" % where, extra=r.text())
        start = check(read_events(tmp), where)
    print("ok: %s: the lost thread started at %s" % (where, start))


if __name__ == "__main__":
    main()
