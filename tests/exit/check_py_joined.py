#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Exit reports at a Python program's normal end, on one interpreter (py_exit_prog.py):
#   - threads the runtime joins are not reported: a ThreadPoolExecutor never shut down (Python
#     joins its workers at exit) and a non-daemon thread still working when main ends. Each runs
#     10 times, 5 of them pinned to one CPU: a thread Python has joined may still be in its last
#     instructions (its OS thread not yet gone) when exit() is called, more often on one CPU,
#     where the woken main thread preempts it. No exit event may appear, nor list such a thread;
#   - a daemon thread blocked in Event.wait() (idle) at the normal end or os._exit: by default no
#     event (idle threads at exit are normal); with FORKSAFE_EXIT_REPORT=all it IS reported: one "exit"
#     event, how "exit", that thread alone, state "idle", python_name "idle-daemon", its stack
#     showing idle_daemon_main at the Event.wait() call; the same with sys.exit(0), and with
#     os._exit(0) (how "_exit");
#   - all together: the event lists the daemon thread only;
#   - a daemon thread busy in pure Python work at the normal end (CPython stops it with
#     pthread_exit when it reaches for the GIL during finalization, so it is gone before the
#     shim's last look): by default one "exit" event lists it, state "busy", python_name
#     "busy-daemon", its stack in busy_daemon_main.
# Python 2.7 has no concurrent.futures: there the pool part is not applicable (noted, not failed).
#   check_py_joined.py --interp debian|pyenv:X.Y|PATH --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import (base_env, check_exit_event, driver_args, fail, has_frame, mark, one_cpu,
                           read_events, resolve_or_skip, run_done, shim_env)

HERE = os.path.dirname(os.path.abspath(__file__))

PROG = os.path.join(HERE, "py_exit_prog.py")
REPEAT = 10


def facts(out):
    f = {"pool": [], "pool_names": [], "nondaemon": [], "daemon": [], "busy": []}
    for line in out.splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "POOL":
            f["pool"] = [int(x) for x in w[1:]]
        elif w[0] == "POOL_NAMES":
            f["pool_names"] = w[1:]
        elif w[0] == "NONDAEMON":
            f["nondaemon"] = [int(w[1])]
        elif w[0] == "DAEMON":
            f["daemon"] = [int(w[1])]
        elif w[0] == "BUSY":
            f["busy"] = [int(w[1])]
    return f


def main():
    a = driver_args("interp", "shim")
    interp = resolve_or_skip(a.interp)
    wait_line = mark(PROG, "idle_wait")
    notes = []

    def run_mode(mode, tmp, tag, pinned=False, **settings):
        pin = one_cpu() if pinned else None
        rc, out, err = run_done([interp, PROG, mode], base_env(), timeout=60, preexec_fn=pin, text=True)
        if rc != 0:
            fail("%s without the shim: exit %d" % (mode, rc), extra=out + err)
        d = os.path.join(tmp, tag)
        os.mkdir(d)
        rc, out, err = run_done([interp, PROG, mode], shim_env(a.shim, d, **settings), timeout=60, preexec_fn=pin, text=True)
        if rc != 0:
            fail("%s with the shim: exit %d" % (mode, rc), extra=out + err)
        return facts(out), read_events(d)

    def joined_names_and_tids(f):
        return set(f["pool_names"]), set(f["pool"]) | set(f["nondaemon"])

    def lists_joined(ev, f):
        names, tids = joined_names_and_tids(f)
        return [t for t in ev["threads"]
                if t["tid"] in tids or t.get("python_name") in names
                or (t.get("python_name") or "").startswith(("ThreadPoolExecutor", "nondaemon-worker"))]

    with tempfile.TemporaryDirectory() as tmp:
        # Joined by the runtime: nothing to report.
        for mode in ("pool", "nondaemon"):
            for i in range(REPEAT):
                f, events = run_mode(mode, tmp, "%s%d" % (mode, i), pinned=i % 2 == 1)
                if mode == "pool" and not f["pool_names"]:
                    notes.append("pool: no concurrent.futures on this interpreter, not applicable")
                    break
                ends = [e for e in events if e["event"] in ("exit", "exec")]
                for e in ends:
                    if lists_joined(e, f):
                        fail("%s (run %d%s): an exit event lists a thread the runtime joins"
                             % (mode, i + 1, i % 2 and ", one CPU" or ""), ends)
                if ends:
                    fail("%s (run %d%s): no thread is cut off, yet there is an exit event"
                         % (mode, i + 1, i % 2 and ", one CPU" or ""), ends)
            else:
                notes.append("%s: no exit event in %d runs (half on one CPU)" % (mode, REPEAT))

        # Only an idle daemon thread is left: normal, so by default nothing is reported ...
        for mode in ("daemon", "osexit"):
            f, events = run_mode(mode, tmp, mode + "-default")
            ends = [e for e in events if e["event"] in ("exit", "exec")]
            if ends:
                fail("%s: only an idle daemon thread is cut off: no exit event by default" % mode, ends)
            notes.append("%s: an idle daemon alone writes no exit event by default" % mode)
        # ... and FORKSAFE_EXIT_REPORT=all lists it.
        for mode, how in (("daemon", "exit"), ("sysexit", "exit"), ("osexit", "_exit"), ("mixed", "exit")):
            f, events = run_mode(mode, tmp, mode, FORKSAFE_EXIT_REPORT="all")
            ends = [e for e in events if e["event"] in ("exit", "exec")]
            if len(ends) != 1 or ends[0]["event"] != "exit":
                fail("%s: expected one exit event" % mode, events)
            ev = ends[0]
            check_exit_event(ev, how)
            if lists_joined(ev, f):
                fail("%s: the exit event lists a thread the runtime joins" % mode, [ev])
            if ev["threads_total"] != 1 or ev["threads"][0]["tid"] != f["daemon"][0]:
                fail("%s: expected exactly the daemon thread %d" % (mode, f["daemon"][0]), [ev])
            t = ev["threads"][0]
            if t.get("python_name") != "idle-daemon":
                fail("%s: python_name should be 'idle-daemon'" % mode, [ev])
            if t["state"] != "idle":
                fail("%s: the daemon thread blocked in Event.wait() should be idle" % mode, [ev])
            if not has_frame(t, PROG, "idle_daemon_main", wait_line):
                fail("%s: python_stack should show idle_daemon_main at line %d" % (mode, wait_line), [ev])
            if not t["python_stack"] or not t["python_stack"][0]["file"].endswith("threading.py"):
                fail("%s: the innermost frame should be in threading.py (Event.wait)" % mode, [ev])
            notes.append("%s: exit event how=%s lists idle-daemon, idle, at line %d" % (mode, how, wait_line))
        # A daemon thread cut off in the middle of its work: reported by default.
        f, events = run_mode("busy", tmp, "busy-default")
        ends = [e for e in events if e["event"] in ("exit", "exec")]
        if len(ends) != 1:
            fail("busy: a busy daemon thread is cut off at exit: expected one exit event", events)
        ev = ends[0]
        check_exit_event(ev, "exit")
        listed = [t for t in ev["threads"] if t["tid"] == f["busy"][0]]
        if [t["tid"] for t in ev["threads"]] != f["busy"]:
            fail("busy: expected exactly the busy daemon thread %d" % f["busy"][0], [ev])
        t = listed[0]
        if t.get("python_name") != "busy-daemon":
            fail("busy: python_name should be 'busy-daemon'", [ev])
        if t["state"] != "busy":
            fail("busy: the daemon thread in pure Python work should be busy", [ev])
        if not any(fr.get("function") == "busy_daemon_main" for fr in t.get("python_stack", [])):
            fail("busy: python_stack should show busy_daemon_main", [ev])
        notes.append("busy: the default exit event lists busy-daemon, busy, in busy_daemon_main")

    for n in notes:
        print("ok: " + n)


if __name__ == "__main__":
    main()
