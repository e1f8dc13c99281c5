#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Exec reports from Python, on one interpreter (py_exit_prog.py); a daemon thread "idle-daemon"
# is blocked in Event.wait() in every case. Idle threads are listed with FORKSAFE_EXIT_REPORT=all
# (by default, a process whose only threads cut off are idle writes nothing, checked for execv):
#   - execv: os.execv("/bin/true", ["true"]) from main: exactly one event from the process, an
#     "exec" event, how "exec", path "/bin/true", listing idle-daemon (idle, its stack at the
#     Event.wait() call);
#   - fork then exec from the multi-threaded parent: subprocess.Popen with preexec_fn (fork, Python
#     code in the child, exec), plain subprocess.Popen (vfork + exec on 3.10+), os.fork + os.execv:
#     no exit or exec event from the child (other events from it are printed as notes: an os.fork
#     child writes its fork report before it execs); the parent's own normal end lists idle-daemon.
#   check_py_exec.py --interp debian|pyenv:X.Y|PATH --shim build/lib/libforksafe.so
import os
import re
import tempfile

from forksafe_test import (base_env, check_exit_event, driver_args, fail, has_frame, mark, read_events,
                           resolve_or_skip, run_done, shim_env)

HERE = os.path.dirname(os.path.abspath(__file__))

PROG = os.path.join(HERE, "py_exit_prog.py")


def main():
    a = driver_args("interp", "shim")
    interp = resolve_or_skip(a.interp)
    wait_line = mark(PROG, "idle_wait")

    def check_daemon(ev, daemon, label):
        if ev["threads_total"] != 1 or ev["threads"][0]["tid"] != daemon:
            fail("%s: expected exactly the daemon thread %d" % (label, daemon), [ev])
        t = ev["threads"][0]
        if t.get("python_name") != "idle-daemon" or t["state"] != "idle":
            fail("%s: the thread should be python_name 'idle-daemon', idle" % label, [ev])
        if not has_frame(t, PROG, "idle_daemon_main", wait_line):
            fail("%s: python_stack should show idle_daemon_main at line %d" % (label, wait_line), [ev])

    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("execv", "popen_preexec", "popen", "forkexec"):
            rc, out, err = run_done([interp, PROG, mode], base_env(), timeout=60, text=True)
            if rc != 0:
                fail("%s without the shim: exit %d" % (mode, rc), extra=out + err)
            d = os.path.join(tmp, mode)
            os.mkdir(d)
            # The daemon is idle: listed only with FORKSAFE_EXIT_REPORT=all (checked below without).
            rc, out, err = run_done([interp, PROG, mode], shim_env(a.shim, d, FORKSAFE_EXIT_REPORT="all"), timeout=60, text=True)
            if rc != 0:
                fail("%s with the shim: exit %d" % (mode, rc), extra=out + err)
            daemon = int(re.search(r"^DAEMON (\d+)$", out, re.M).group(1))
            events = read_events(d)
            if mode == "execv":
                if len(events) != 1 or events[0]["event"] != "exec":
                    fail("execv: expected exactly one event, exec (none from /bin/true)", events)
                ev = events[0]
                check_exit_event(ev, "exec")
                if ev.get("path") != "/bin/true":
                    fail("execv: path should be /bin/true", [ev])
                check_daemon(ev, daemon, "execv")
                print("ok: execv: exec event path=/bin/true lists idle-daemon, idle, at line %d" % wait_line)
                d = os.path.join(tmp, "execv-default")
                os.mkdir(d)
                rc, out, err = run_done([interp, PROG, mode], shim_env(a.shim, d), timeout=60, text=True)
                if rc != 0 or read_events(d):
                    fail("execv: only an idle thread is cut off: no event by default", read_events(d))
                print("ok: execv: no event by default (the only thread cut off is idle)")
                continue
            child = int(re.search(r"^CHILD (\d+)$", out, re.M).group(1))
            from_child = [e for e in events if e["pid"] == child]
            if any(e["event"] in ("exit", "exec") for e in from_child):
                fail("%s: the child %d (fork then exec) wrote an exit or exec event" % (mode, child), from_child)
            if from_child:
                # Not this feature: an os.fork child writes its fork report from Python's
                # after-fork hook (3.7+), before it execs (README, Python-aware reports).
                print("note: %s: the child wrote %s" % (mode, ", ".join(e["event"] for e in from_child)))
            ends = [e for e in events if e["event"] in ("exit", "exec")]
            if len(ends) != 1 or ends[0]["event"] != "exit" or ends[0]["pid"] == child:
                fail("%s: expected exactly the parent's exit event" % mode, events)
            check_exit_event(ends[0], "exit")
            check_daemon(ends[0], daemon, mode + " (parent)")
            print("ok: %s: no exit/exec event from child %d; the parent's exit lists idle-daemon" % (mode, child))


if __name__ == "__main__":
    main()
