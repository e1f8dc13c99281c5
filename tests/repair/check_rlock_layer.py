#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The Python layer of repair on its own (CPython 3.9+): with semaphore repair off, an RLock held
# by a lost thread at os.fork is released in the child by the after-fork hook. Control: with both
# layers off the same child hangs.
#   check_rlock_layer.py --interp debian|pyenv:X.Y --shim libforksafe.so
import os
import tempfile

from forksafe_test import (driver_args, fail, python_version, read_events, resolve_or_skip, run_done,
                           shim_env, skip)

HERE = os.path.dirname(os.path.abspath(__file__))


def run(interp, shim, extra, hang_after):
    with tempfile.TemporaryDirectory() as tmp:
        r = run_done([interp, os.path.join(HERE, "held_lock.py"), "rlock", "--hang-after", str(hang_after)],
                     shim_env(shim, tmp, **extra), timeout=120, text=True)
        events = read_events(tmp)
    return r.out.split(), events


def main():
    a = driver_args("interp", "shim")
    interp = resolve_or_skip(a.interp)
    if python_version(interp) < (3, 9):
        skip("RLock._at_fork_reinit exists from CPython 3.9")
    out, _ = run(interp, a.shim, {"FORKSAFE_REPAIR_SEMAPHORES": "off", "FORKSAFE_REPAIR_RLOCKS": "off"}, 2)
    if "hung" not in out:
        fail("with both layers off the child should hang: %r" % out)
    out, events = run(interp, a.shim, {"FORKSAFE_REPAIR_SEMAPHORES": "off"}, 20)
    repairs = [e for e in events if e["event"] == "lock_repaired"]
    if "finished" not in out:
        fail("the Python layer alone should un-stick the child: %r" % out, events)
    if len(repairs) != 1 or repairs[0]["type"] != "python_rlock" or repairs[0].get("owner_python_name") != "holder":
        fail("one python_rlock repair naming 'holder'", events)
    print("ok: the Python layer alone released the RLock of lost thread 'holder' on %s" % interp)


if __name__ == "__main__":
    main()
