#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The embedded-interpreter case (tests/reports/embed.c) on one interpreter's libpython: without the shim
# the child of a fork from C hangs on a lock a Python thread held; with it the child finishes and
# the report names the Python thread and the line it was on. Then an embedding program that
# initializes and finalizes Python three times, forking in each round.
#   check_embed.py --interp debian|pyenv:X.Y --bin build/tests/reports/embed --shim libforksafe.so
import os
import subprocess
import tempfile

from forksafe_test import base_env, driver_args, fail, read_events, resolve_or_skip, run_done, shim_env, skip


def main():
    a = driver_args("interp", "bin", "shim")
    interp = resolve_or_skip(a.interp)
    lib = run_done([interp, "-c", "import os, sysconfig as s; "
                    "print(os.path.join(s.get_config_var('LIBDIR'), s.get_config_var('INSTSONAME')))"],
                   base_env(), timeout=60, text=True).out.strip()
    if not os.path.exists(lib):
        skip("%s has no shared libpython (%s)" % (interp, lib))
    for mode in ("local", "global"):
        p = run_done([a.bin, lib, mode], base_env(), timeout=60, text=True, stderr=subprocess.STDOUT)
        if p.rc != 3:
            fail("(%s): without the shim the child should hang: exit %d" % (mode, p.rc), extra=p.out)
        with tempfile.TemporaryDirectory() as tmp:
            p = run_done([a.bin, lib, mode], shim_env(a.shim, tmp), timeout=60, text=True, stderr=subprocess.STDOUT)
            events = read_events(tmp)
        if p.rc != 0:
            fail("(%s): with the shim: exit %d" % (mode, p.rc), events, extra=p.out)
        forks = [e for e in events if e["event"] == "fork"]
        lost = [t for f in forks for t in f["lost_threads"] if t.get("python_name") == "embedded-holder"]
        want = {"file": "<string>", "function": "embedded_holder", "line": 7}
        if len(forks) != 1 or not lost or want not in lost[0].get("python_stack", []):
            fail("(%s): the report should name 'embedded-holder' at <string> line 7" % mode, events)
        repairs = [e for e in events if e["event"] == "lock_repaired"]
        if not repairs or repairs[0].get("owner_python_name") != "embedded-holder":
            fail("(%s): the repair should name 'embedded-holder'" % mode, events)
        print("ok (%s): %s" % (mode, lib))

    # Python initialized and finalized three times: each round's os.fork must not hang (the hooks
    # of the first interpreter are gone with it), and each child's report names the Python thread.
    p = run_done([a.bin, lib, "reinit"], base_env(), timeout=60, text=True, stderr=subprocess.STDOUT)
    if p.rc != 0 or p.out.count("round ok") != 3:
        fail("(reinit): without the shim: exit %d" % p.rc, extra=p.out)
    with tempfile.TemporaryDirectory() as tmp:
        p = run_done([a.bin, lib, "reinit"], shim_env(a.shim, tmp), timeout=60, text=True, stderr=subprocess.STDOUT)
        events = read_events(tmp)
    if p.rc != 0 or p.out.count("round ok") != 3:
        fail("(reinit): with the shim: exit %d" % p.rc, events, extra=p.out)
    forks = [e for e in events if e["event"] == "fork"]
    named = [f for f in forks if [t.get("python_name") for t in f["lost_threads"]] == ["reinit-waiter"]]
    if len(forks) != 3 or len(named) != 3:
        fail("(reinit): expected 3 fork reports, each naming 'reinit-waiter'", events)
    print("ok (reinit): three interpreters in turn, each fork reported with its Python thread")


if __name__ == "__main__":
    main()
