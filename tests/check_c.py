#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Runs one C scenario (tests/c/scenarios.c) without and with the shim, then checks what a user
# would look at: the program's outcome (the scenario judges its own child), and the JSON report.
#   check_c.py --bin build/tests/c/scenarios --shim build/lib/libforksafe.so CASE
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

TIMEOUT = 60


def run(cmd, env, label):
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT, universal_newlines=True)
    if p.returncode != 0:
        fail("%s: exit %d\nstdout:\n%s\nstderr:\n%s" % (label, p.returncode, p.stdout, p.stderr))
    return p


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def events(logdir):
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "*.jsonl"))):
        with open(path) as f:
            for line in f:
                out.append(json.loads(line))
    return out


def of(evs, kind):
    return [e for e in evs if e["event"] == kind]


def lost_names(ev):
    return sorted(t["name"] for t in ev["lost_threads"])


def expect(cond, msg, evs):
    if not cond:
        fail(msg + "\nevents:\n" + "\n".join(json.dumps(e) for e in evs))


def check_fork_event(e):
    for key in ("event", "time", "pid", "parent_pid", "child_pid", "forking_thread", "lost_threads"):
        assert key in e, key
    assert e["time"].endswith("Z") and "T" in e["time"]
    assert e["pid"] == e["child_pid"]


# What each case must show in the report, given the JSON events of the run with the shim.
def check(case, evs, out, extra):
    forks, repairs = of(evs, "fork"), of(evs, "lock_repaired")
    for e in forks:
        check_fork_event(e)
    if case.startswith("held_") or case in ("errno", "forkpty"):
        expect(len(forks) >= 1 and lost_names(forks[0]) == ["holder"], "one fork, lost 'holder'", evs)
        t = forks[0]["lost_threads"][0]
        expect(t["start"].startswith("holder_main+0x0 (") and "scenarios" in t["start"],
               "the lost thread's start routine is holder_main in the scenarios program", evs)
        expect(len(repairs) == 1, "exactly one repair", evs)
        r = repairs[0]
        expect(r["owner_name"] == "holder" and r["owner_tid"] == t["tid"] and r["type"] == "semaphore"
               and r["lock"].startswith("0x") and r["tid"] == r["pid"],
               "the repair names the lost holder and the child's thread", evs)
    elif case in ("pshared", "signal_sem", "handoff_sem", "forker_held", "child_thread_lock"):
        expect(len(forks) >= 1, "a fork report", evs)
        expect(not repairs, "nothing repaired", evs)
    elif case == "nested":
        expect(len(forks) == 2, "two fork reports (child, grandchild)", evs)
        expect(sorted(lost_names(f)[0] for f in forks) == ["holder1", "holder2"], "each lost its holder", evs)
        expect(sorted(r["owner_name"] for r in repairs) == ["holder1", "holder2"],
               "the grandchild repaired both locks", evs)
        expect(len({r["pid"] for r in repairs}) == 1, "both repairs in the grandchild", evs)
    elif case == "race":
        expect(len(repairs) == 1, "exactly one of the racing threads took the lock over", evs)
        expect(repairs[0]["tid"] != repairs[0]["pid"], "taken by a thread created in the child", evs)
    elif case == "report_mode":
        orphaned = of(evs, "lock_orphaned")
        expect(not repairs and len(orphaned) == 1 and orphaned[0]["owner_name"] == "holder",
               "reported as orphaned once, not repaired", evs)
    elif case == "exec_no_report":
        expect(not evs, "no report for a fork followed directly by exec", evs)
    elif case == "libc_thread":
        expect(len(forks) == 1 and forks[0]["lost_threads_total"] == 1 and
               forks[0]["lost_threads"][0]["start"] is None,
               "the timer thread libc started itself is listed, without a start routine", evs)
    elif case == "single_threaded":
        expect(not evs, "no report for a single-threaded process", evs)
    elif case == "fork_report":
        vals = dict(line.split("=") for line in out.stdout.split())
        expect(len(forks) == 1, "one fork report", evs)
        f = forks[0]
        expect(f["parent_pid"] == int(vals["parent_pid"]) and f["child_pid"] == int(vals["child_pid"]),
               "parent and child pids", evs)
        expect(f["forking_thread"]["tid"] == int(vals["parent_pid"]), "forked by the main thread", evs)
        expect([t["tid"] for t in f["lost_threads"]] == [int(vals["holder_tid"])], "lost the holder", evs)
    elif case == "atfork_order":
        expect(len(forks) == 1 and lost_names(forks[0]) == ["holder"],
               "the library's worker, stopped by its prepare handler, is not reported lost", evs)
        expect(len(repairs) == 1, "the library's child handler got the lock", evs)
    elif case == "fd2_reuse":
        with open(extra["fd2"]) as f:
            data = f.read()
        if data != "program data\n":
            fail("the program's own fd 2 file received our output:\n" + data)
        # The library holds no descriptor of its own (a program must see exactly its own fds), so
        # once the program has replaced fd 2 the report has nowhere to go on stderr: it is dropped
        # (FORKSAFE_LOG is the way to keep reports from such a program).
        expect("forksafe[" not in out.stderr, "nothing reached the pipe that fd 2 was", evs)
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
        extra = {"fd2": os.path.join(tmp, "fd2.txt")}
        base["FD2_FILE"] = extra["fd2"]
        if a.case != "report_mode":  # report mode's outcome is the same both ways
            run([a.bin, a.case], base, "without the shim")
        env = dict(base, LD_PRELOAD=os.path.abspath(a.shim))
        if a.case == "fd2_reuse":
            env.update(FORKSAFE_FORMAT="text")
        else:
            env.update(FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"))
        if a.case == "report_mode":
            env["FORKSAFE_MODE"] = "report"
        out = run([a.bin, a.case], env, "with the shim")
        check(a.case, events(tmp), out, extra)
    print("ok: " + a.case)


if __name__ == "__main__":
    main()
