#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Exit and exec reports from a C program (c_exit.c) that ends while two worker threads are alive:
# "busy-worker" (spinning, or a work loop sleeping in nanosleep) and "idle-worker" (blocked in
# pthread_cond_wait, or in read on a pipe).
#   - return from main / exit(): one "exit" event, how "exit"; _exit / _Exit: how "_exit". The
#     event lists exactly the two workers (not the exiting thread), with their tids, names,
#     start routines (busy_worker / idle_worker, from the -rdynamic symbol table) and states;
#   - FORKSAFE_EXIT_REPORT=off: no event;
#   - execv("/bin/true") from main: one "exec" event, how "exec", path "/bin/true";
#   - fork then execv in the child: no event from the child; the parent's own exit is reported.
# Every case first runs without the shim (the program itself must behave).
#   check_c_exit.py --bin build/tests/exit/c_exit --shim build/lib/libforksafe.so
import os
import re
import tempfile

from forksafe_test import base_env, check_exit_event, driver_args, fail, read_events, run_done, shim_env

# (argv after the binary, expected how, what busy-worker does, what idle-worker does)
END_CASES = [
    (["return", "spin", "cond"], "exit"),
    (["return", "sleep", "pipe"], "exit"),
    (["exit", "spin", "pipe"], "exit"),
    (["exit", "sleep", "cond"], "exit"),
    (["_exit", "spin", "cond"], "_exit"),
    (["_exit", "sleep", "pipe"], "_exit"),
    (["_Exit", "spin", "pipe"], "_exit"),
]


def parse_tids(out):
    m = re.search(r"^TIDS main=(\d+) busy=(\d+) idle=(\d+)$", out, re.M)
    if not m:
        fail("the program did not print its TIDS line", extra=out)
    return {"main": int(m.group(1)), "busy": int(m.group(2)), "idle": int(m.group(3))}


def run_program(binary, args, env):
    rc, out, err = run_done([binary] + args, env, timeout=60, text=True)
    if rc != 0:
        fail("c_exit %s exited %d" % (" ".join(args), rc), extra=out + err)
    return out


def check_workers(ev, tids, binary, label):
    """The event lists exactly busy-worker and idle-worker, with the right fields."""
    by_name = {t["name"]: t for t in ev["threads"]}
    if ev["threads_total"] != 2 or sorted(by_name) != ["busy-worker", "idle-worker"]:
        fail("%s: expected exactly busy-worker and idle-worker" % label, [ev])
    for role in ("busy", "idle"):
        t = by_name[role + "-worker"]
        if t["tid"] != tids[role]:
            fail("%s: %s-worker has tid %r, the program says %d" % (label, role, t["tid"], tids[role]), [ev])
        start = t["start"] or ""
        if not re.match(r"^%s_worker\+0x[0-9a-f]+ \((.*)\)$" % role, start) or \
                os.path.basename(start.rsplit("(", 1)[-1].rstrip(")")) != os.path.basename(binary):
            fail("%s: %s-worker start should be %s_worker+0x.. (%s), is %r"
                 % (label, role, role, os.path.basename(binary), start), [ev])
        if t["state"] != role:
            fail("%s: %s-worker should be %s, is %r" % (label, role, role, t["state"]), [ev])
        if "python_name" in t or "python_stack" in t:
            fail("%s: a C thread has Python fields" % label, [ev])
    if any(t["tid"] == tids["main"] for t in ev["threads"]):
        fail("%s: the exiting thread is listed" % label, [ev])


def main():
    a = driver_args("bin", "shim")
    binary = a.bin
    results = []

    with tempfile.TemporaryDirectory() as top:
        n = [0]

        def logdir():
            n[0] += 1
            d = os.path.join(top, "run%d" % n[0])
            os.mkdir(d)
            return d

        # Exit paths.
        for args, how in END_CASES:
            label = "c_exit " + " ".join(args)
            parse_tids(run_program(binary, args, base_env()))  # the program works without the shim
            d = logdir()
            tids = parse_tids(run_program(binary, args, shim_env(a.shim, d)))
            events = read_events(d)
            ends = [e for e in events if e["event"] in ("exit", "exec")]
            if len(ends) != 1 or ends[0]["event"] != "exit":
                fail("%s: expected one exit event" % label, events)
            ev = ends[0]
            if ev["pid"] != tids["main"]:
                fail("%s: event pid %r is not the process %d" % (label, ev["pid"], tids["main"]), [ev])
            check_exit_event(ev, how)
            check_workers(ev, tids, binary, label)
            results.append("%s: exit event how=%s, busy/idle right" % (label, how))

        # The switch.
        for args in (["return", "spin", "cond"], ["_exit", "spin", "cond"]):
            d = logdir()
            run_program(binary, args, shim_env(a.shim, d, FORKSAFE_EXIT_REPORT="off"))
            events = [e for e in read_events(d) if e["event"] in ("exit", "exec")]
            if events:
                fail("FORKSAFE_EXIT_REPORT=off: c_exit %s still reported" % " ".join(args), events)
        results.append("FORKSAFE_EXIT_REPORT=off: nothing reported")

        # exec from a multi-threaded process.
        run_program(binary, ["exec", "spin", "cond"], base_env())
        d = logdir()
        tids = parse_tids(run_program(binary, ["exec", "spin", "cond"], shim_env(a.shim, d)))
        events = read_events(d)
        ends = [e for e in events if e["event"] in ("exit", "exec")]
        if len(ends) != 1 or ends[0]["event"] != "exec":
            fail("c_exit exec: expected one exec event (and no exit event from /bin/true)", events)
        ev = ends[0]
        check_exit_event(ev, "exec")
        if ev.get("path") != "/bin/true" or ev["pid"] != tids["main"]:
            fail("c_exit exec: path must be /bin/true and pid %d" % tids["main"], [ev])
        check_workers(ev, tids, binary, "c_exit exec")
        results.append("c_exit exec: exec event path=/bin/true, busy/idle right")

        # fork, then exec in the child at once: nothing from the child.
        run_program(binary, ["forkexec", "spin", "cond"], base_env())
        d = logdir()
        out = run_program(binary, ["forkexec", "spin", "cond"], shim_env(a.shim, d))
        tids = parse_tids(out)
        child = int(re.search(r"^CHILD (\d+)$", out, re.M).group(1))
        events = read_events(d)
        from_child = [e for e in events if e["pid"] == child]
        if from_child:
            fail("c_exit forkexec: the child %d (fork then execv) wrote events" % child, events)
        ends = [e for e in events if e["event"] in ("exit", "exec")]
        if len(ends) != 1 or ends[0]["pid"] != tids["main"] or ends[0]["event"] != "exit":
            fail("c_exit forkexec: expected exactly the parent's exit event", events)
        check_exit_event(ends[0], "exit")
        check_workers(ends[0], tids, binary, "c_exit forkexec (parent)")
        results.append("c_exit forkexec: nothing from child %d; parent's exit reported" % child)

    for r in results:
        print("ok: " + r)


if __name__ == "__main__":
    main()
