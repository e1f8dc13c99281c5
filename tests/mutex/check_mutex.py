#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Runs one pthread mutex/rwlock scenario (mutex_scenarios.c) without and with the shim, and checks
# what a user would look at: the program's outcome (the scenario judges its own child, bounded)
# and the JSON reports.
#   check_mutex.py --bin build/tests/mutex/mutex_scenarios --shim build/lib/libforksafe.so CASE
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

TIMEOUT = 60


def fail(msg, evs=()):
    print("FAIL: " + msg)
    for e in evs:
        print("  " + json.dumps(e))
    sys.exit(1)


def run(cmd, env, label):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT,
                       universal_newlines=True, start_new_session=True)
    if p.returncode != 0:
        fail("%s: exit %d\nstdout:\n%s\nstderr:\n%s" % (label, p.returncode, p.stdout, p.stderr))


def events(d):
    out = []
    for path in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
        with open(path) as f:
            out += [json.loads(line) for line in f]
    return out


def check(case, evs):
    forks = [e for e in evs if e["event"] == "fork"]
    repaired = [e for e in evs if e["event"] == "lock_repaired"]
    orphaned = [e for e in evs if e["event"] == "lock_orphaned"]
    holder = [t for f in forks for t in f["lost_threads"] if t["name"] == "holder"]
    if case.startswith("lost_") or case.startswith("rwlock_") and case != "never_rwlock_read_held":
        kind = "pthread_rwlock" if case.startswith("rwlock_") else "pthread_mutex"
        if len(repaired) != 1 or orphaned:
            fail("exactly one repair, nothing orphaned", evs)
        r = repaired[0]
        if r["type"] != kind or r["owner_name"] != "holder" or not holder or r["owner_tid"] != holder[0]["tid"]:
            fail("the repair names the lost holder (a %s) listed in the fork report" % kind, evs)
        if r["tid"] != r["pid"] or not r.get("waiter_in", "").endswith("mutex_scenarios"):
            fail("taken over by the child's thread, called from the scenario program", evs)
    elif case.startswith("forker_") or case in ("never_trylock", "never_child_thread"):
        if repaired or orphaned:
            fail("no lock event", evs)
    elif case in ("never_pshared", "never_robust", "never_prio_inherit", "never_rwlock_read_held", "report_mode"):
        reason = {"never_pshared": "process_shared", "never_robust": "robust",
                  "never_prio_inherit": "priority_inheritance", "never_rwlock_read_held": "read_held",
                  "report_mode": "report_mode"}[case]
        if repaired or len(orphaned) != 1 or orphaned[0].get("reason") != reason:
            fail("not repaired; one lock_orphaned with reason %s" % reason, evs)
        o = orphaned[0]
        if case == "never_rwlock_read_held":
            if o["owner_tid"] is not None:
                fail("a read-held rwlock names no owner", evs)
        elif o["owner_name"] != "holder":
            fail("the orphaned event names the lost holder", evs)
    else:
        fail("no checks for case " + case)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("case")
    a = ap.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD"))}
    with tempfile.TemporaryDirectory() as tmp:
        run([a.bin, a.case], base, "without the shim")
        env = dict(base, LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_FORMAT="json",
                   FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"), FORKSAFE_EXIT_REPORT="off")
        if a.case == "report_mode":
            env["FORKSAFE_MODE"] = "report"
        run([a.bin, a.case], env, "with the shim")
        check(a.case, events(tmp))
    print("ok: " + a.case)


if __name__ == "__main__":
    main()
