#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# SQLite's connection mutex held by a lost thread (sqlite_fork.py), with Debian's python3 and
# libsqlite3: the child hangs without the shim; with it, it finishes, and the report names the
# lost query thread and SQLite as the code that waited.
#   check_sqlite.py --shim build/lib/libforksafe.so
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"


def run(env):
    p = subprocess.run([PY, os.path.join(HERE, "sqlite_fork.py"), "--hang-after", "5"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60,
                       start_new_session=True)
    return p.stdout.strip().splitlines()[-1] if p.stdout.strip() else "no output: " + p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    if not os.path.exists(PY) or subprocess.run([PY, "-c", "import sqlite3"], timeout=30).returncode != 0:
        print("SKIP: Debian's python3 with sqlite3 is not installed")
        sys.exit(77)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD", "PYTHON"))}
    without = run(base)
    if without != "RESULT hung":
        print("FAIL: without the shim the child should hang on SQLite's mutex: " + without)
        sys.exit(1)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(base, LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_FORMAT="json",
                   FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"))
        with_shim = run(env)
        evs = [json.loads(l) for p in glob.glob(os.path.join(tmp, "*.jsonl")) for l in open(p)]
    if with_shim != "RESULT finished":
        print("FAIL: with the shim the child should finish: " + with_shim)
        sys.exit(1)
    rep = [e for e in evs if e["event"] == "lock_repaired"]
    if len(rep) != 1 or rep[0]["type"] != "pthread_mutex" or rep[0].get("owner_python_name") != "query-thread" \
            or "libsqlite3" not in rep[0].get("waiter_in", ""):
        print("FAIL: one pthread_mutex repair, owner 'query-thread', waiting in libsqlite3:\n" +
              "\n".join(json.dumps(e) for e in evs))
        sys.exit(1)
    print("ok: SQLite's connection mutex held by a lost query thread: hung without the shim, repaired with it "
          "(waiting in %s)" % rep[0]["waiter_in"])


if __name__ == "__main__":
    main()
