#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# SQLite's connection mutex held by a lost thread (sqlite_fork.py), with Debian's python3 and
# libsqlite3: the child hangs without the shim; with it, it finishes, and the report names the
# lost query thread and SQLite as the code that waited.
#   check_sqlite.py --shim build/lib/libforksafe.so
import os
import subprocess
import tempfile

from forksafe_test import base_env, driver_args, fail, of, read_events, run, shim_env, skip

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def outcome(env):
    r = run([PY, os.path.join(HERE, "sqlite_fork.py"), "--hang-after", "5"], env, timeout=60, text=True)
    out = r.out.strip().splitlines()
    return out[-1] if out else "no output: " + r.err


def main():
    a = driver_args("shim")
    if not os.path.exists(PY) or subprocess.run([PY, "-c", "import sqlite3"], timeout=30).returncode != 0:
        skip("Debian's python3 with sqlite3 is not installed")
    without = outcome(base_env())
    if without != "RESULT hung":
        fail("without the shim the child should hang on SQLite's mutex: " + without)
    with tempfile.TemporaryDirectory() as tmp:
        with_shim = outcome(shim_env(a.shim, tmp))
        evs = read_events(tmp)
    if with_shim != "RESULT finished":
        fail("with the shim the child should finish: " + with_shim, evs)
    rep = of(evs, "lock_repaired")
    if len(rep) != 1 or rep[0]["type"] != "pthread_mutex" or rep[0].get("owner_python_name") != "query-thread" \
            or "libsqlite3" not in rep[0].get("waiter_in", ""):
        fail("one pthread_mutex repair, owner 'query-thread', waiting in libsqlite3", evs)
    print("ok: SQLite's connection mutex held by a lost query thread: hung without the shim, repaired with it "
          "(waiting in %s)" % rep[0]["waiter_in"])


if __name__ == "__main__":
    main()
