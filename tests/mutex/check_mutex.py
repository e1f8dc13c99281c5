#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Runs one pthread mutex/rwlock scenario (mutex_scenarios.c) without and with the shim, and checks
# what a user would look at: the program's outcome (the scenario judges its own child, bounded)
# and the JSON reports.
#   check_mutex.py --bin build/tests/mutex/mutex_scenarios --shim build/lib/libforksafe.so CASE
import argparse
import os
import tempfile

from forksafe_test import base_env, fail, of, read_events, run_ok, shim_env


def check(case, evs):
    forks, repaired, orphaned = of(evs, "fork"), of(evs, "lock_repaired"), of(evs, "lock_orphaned")
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
    a.bin, a.shim = os.path.abspath(a.bin), os.path.abspath(a.shim)
    with tempfile.TemporaryDirectory() as tmp:
        run_ok([a.bin, a.case], base_env(), "without the shim", timeout=60)
        settings = {"FORKSAFE_EXIT_REPORT": "off"}
        if a.case == "report_mode":
            settings["FORKSAFE_MODE"] = "report"
        run_ok([a.bin, a.case], shim_env(a.shim, tmp, **settings), "with the shim", timeout=60)
        check(a.case, read_events(tmp))
    print("ok: " + a.case)


if __name__ == "__main__":
    main()
