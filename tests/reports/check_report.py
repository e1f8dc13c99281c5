#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Runs one scenario of report_scenarios.py on one interpreter with the shim, then checks the JSON
# report as a user would read it: Python thread names, and the files, functions and line numbers
# of their stacks (the `# MARK:` comments of the scenario files).
#   check_report.py --interp debian|pyenv:X.Y|PATH --case CASE --shim libforksafe.so
import json
import os
import re
import tempfile

from forksafe_test import driver_args, fail, frame, mark, read_events, resolve_or_skip, run_done, shim_env

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.join(HERE, "report_scenarios.py")
LIBMOD = os.path.join(HERE, "libthread_mod.py")


def has_frame(thread, path, func, line):
    return frame(path, func, line) in thread.get("python_stack", [])


def main():
    a = driver_args("interp", "case", "shim")
    interp = resolve_or_skip(a.interp)
    with tempfile.TemporaryDirectory() as tmp:
        p = run_done([interp, SCENARIO, a.case], shim_env(a.shim, tmp), timeout=120, text=True)
        if p.rc != 0:
            fail("scenario exit %d" % p.rc, extra=p.out + p.err)
        facts = json.loads([l for l in p.out.splitlines() if l.startswith("FACTS ")][0][6:])
        events = read_events(tmp)
    forks = [e for e in events if e["event"] == "fork"]
    repairs = [e for e in events if e["event"] == "lock_repaired"]

    if a.case in ("named", "default_names", "library"):
        mine = [e for e in forks if e["child_pid"] == facts["child"]]
        if len(mine) != 1 or facts["status"] != 0:
            fail("one fork report for child %d" % facts["child"], events)
        ev = mine[0]
        ft = ev["forking_thread"]
        if ft.get("python_name") != "MainThread" or ft.get("python_stack", [None])[0] != \
                frame(SCENARIO, "do_fork", mark(SCENARIO, "fork")):
            fail("the forking thread is MainThread, innermost frame do_fork() at os.fork", events)
        lost = ev["lost_threads"]
        if a.case == "named":
            t = [t for t in lost if t.get("python_name") == "metrics-flusher"]
            if not t or not has_frame(t[0], SCENARIO, "hold_named", mark(SCENARIO, "hold")):
                fail("lost thread 'metrics-flusher' waiting in hold_named()", events)
        elif a.case == "default_names":
            names = sorted(t.get("python_name") for t in lost)
            if names != facts["names"]:
                fail("lost threads named %s" % facts["names"], events)
            for t in lost:
                if not re.match(r"^Thread-\d+( \(idle\))?$", t["python_name"]) or \
                        not has_frame(t, SCENARIO, "idle", mark(SCENARIO, "idle")):
                    fail("default-named thread idle in idle()", events)
        else:
            t = [t for t in lost if has_frame(t, LIBMOD, "_monitor_loop", mark(LIBMOD, "monitor"))]
            if len(t) != 1 or not re.match(r"^Thread-\d+( \(_monitor_loop\))?$", t[0].get("python_name", "")):
                fail("the library's import-time thread, in _monitor_loop()", events)
    elif a.case == "multiprocessing":
        if facts["result"] != [n * n for n in range(6)]:
            fail("pool results")
        worker_forks = [e for e in forks if e["child_pid"] in facts["workers"]]
        if len(worker_forks) != 2:
            fail("a fork report from each of the 2 workers", events)
        for ev in worker_forks:
            t = [t for t in ev["lost_threads"] if t.get("python_name") == "mp-holder"]
            if not t or not has_frame(t[0], SCENARIO, "hold_named", mark(SCENARIO, "hold")):
                fail("each worker lost 'mp-holder' in hold_named()", events)
        if not repairs or any(r.get("owner_python_name") != "mp-holder" for r in repairs):
            fail("repairs name the lost owner 'mp-holder'", events)
    elif a.case == "storm":
        if facts["failures"]:
            fail("children that failed: %s" % facts["failures"])
        if len(forks) != facts["forks"]:
            fail("one report per fork: %d of %d" % (len(forks), facts["forks"]), events)
        bad = [e for e in forks if e["forking_thread"].get("python_stack", [{}])[0].get("function") != "forker"]
        if bad:
            fail("every report shows the fork in forker()", bad[:3])
    else:
        fail("unknown case " + a.case)
    print("ok: %s on %s" % (a.case, interp))


if __name__ == "__main__":
    main()
