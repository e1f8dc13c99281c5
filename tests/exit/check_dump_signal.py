#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Listing on demand (FORKSAFE_DUMP_SIGNAL=USR2): a running process gets `kill -USR2 PID` and
# writes one "thread_list" event, then goes on running (and later exits normally).
#   - C (c_exit dump): the workers block SIGUSR2, so the main thread (blocked in read on stdin)
#     takes it. The list has all 3 threads (threads_total 3): main, busy (it is running the
#     handler), busy-worker busy, idle-worker idle, with names and start routines;
#   - Python (py_exit_prog.py dump, 3.3+): the list has the main thread, busy, and idle-daemon,
#     idle, with its python_name;
#   - the same C run with the shim but without FORKSAFE_DUMP_SIGNAL: SIGUSR2 keeps its default
#     action and kills the process (the listing is off by default).
# Each signal is sent only once the program has said READY, and the event is awaited by polling
# the log with a deadline.
#   check_dump_signal.py --bin build/tests/exit/c_exit --shim build/lib/libforksafe.so [--interp debian]
import os
import re
import selectors
import signal
import subprocess
import tempfile
import time

from forksafe_test import (Result, check_thread_fields, driver_args, fail, no_sanitizer_report, read_events,
                           resolve_or_skip, shim_env, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))

PROG = os.path.join(HERE, "py_exit_prog.py")


def read_until_ready(proc, timeout=30):
    """Reads the program's stdout until its READY line (bounded). Returns what it printed."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"READY\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            proc.kill()
            proc.wait(timeout=30)
            fail("the program did not say READY within %d s: %r" % (timeout, buf))
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            proc.wait(timeout=30)
            fail("the program ended before READY (exit %r): %r" % (proc.returncode, buf))
        buf += chunk
    sel.close()
    return buf.decode()


def signalled_run(cmd, env, logdir, expect_listing=True):
    """Starts cmd, signals it with SIGUSR2 once READY, waits for its thread_list event (if
    expected), closes its stdin. Returns (stdout before READY, return code, events)."""
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out = read_until_ready(proc)
        os.kill(proc.pid, signal.SIGUSR2)
        if expect_listing:
            wait_for(lambda: any(e["event"] == "thread_list" for e in read_events(logdir)), 10,
                     "the thread_list event")
        rest, err = proc.communicate(timeout=30)  # closes stdin: the program ends
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise
    err = err.decode(errors="replace")
    no_sanitizer_report(cmd, Result(proc.returncode, out + rest.decode(errors="replace"), err, 0, False))
    return out, proc.returncode, read_events(logdir), err


def main():
    a = driver_args("bin", "shim", interp="debian")
    binary = a.bin

    with tempfile.TemporaryDirectory() as tmp:
        # C.
        d = os.path.join(tmp, "c")
        os.mkdir(d)
        out, rc, events, err = signalled_run([binary, "dump", "spin", "cond"],
                                             shim_env(a.shim, d, FORKSAFE_DUMP_SIGNAL="USR2"), d)
        if rc != 0:
            fail("c_exit dump: exit %r after the signal" % rc, events, extra=out + err)
        m = re.search(r"TIDS main=(\d+) busy=(\d+) idle=(\d+)", out)
        tids = {"main": int(m.group(1)), "busy": int(m.group(2)), "idle": int(m.group(3))}
        lists = [e for e in events if e["event"] == "thread_list"]
        if len(lists) != 1:
            fail("c_exit dump: expected one thread_list event", events)
        ev = lists[0]
        if ev["pid"] != tids["main"] or ev.get("threads_total") != 3 or len(ev.get("threads", [])) != 3:
            fail("c_exit dump: expected the 3 threads of process %d" % tids["main"], [ev])
        by_tid = {t["tid"]: t for t in ev["threads"]}
        for t in ev["threads"]:
            check_thread_fields(ev, t)
        want = {"main": ("busy", None), "busy": ("busy", "busy-worker"), "idle": ("idle", "idle-worker")}
        for role, (state, name) in want.items():
            t = by_tid.get(tids[role])
            if t is None:
                fail("c_exit dump: thread %d (%s) is not listed" % (tids[role], role), [ev])
            if t["state"] != state or (name and t["name"] != name):
                fail("c_exit dump: the %s thread should be %s%s" % (role, state, name and " and named " + name or ""), [ev])
            if name and not (t["start"] or "").startswith(name.replace("-", "_") + "+0x"):
                fail("c_exit dump: %s should start at %s" % (name, name.replace("-", "_")), [ev])
        exits = [e for e in events if e["event"] == "exit"]
        if len(exits) != 1 or exits[0]["threads_total"] != 2:
            fail("c_exit dump: after the listing the program goes on and its exit is reported", events)
        print("ok: C: thread_list with main (busy, took the signal), busy-worker busy, idle-worker idle; "
              "the process went on and exited 0")

        # Off by default: SIGUSR2 keeps its default action.
        d = os.path.join(tmp, "c-off")
        os.mkdir(d)
        out, rc, events, err = signalled_run([binary, "dump", "spin", "cond"], shim_env(a.shim, d), d,
                                             expect_listing=False)
        if rc != -signal.SIGUSR2:
            fail("without FORKSAFE_DUMP_SIGNAL, SIGUSR2 should kill the program; exit %r" % rc, events)
        if any(e["event"] == "thread_list" for e in events):
            fail("without FORKSAFE_DUMP_SIGNAL: a thread_list event", events)
        print("ok: FORKSAFE_DUMP_SIGNAL unset: SIGUSR2 killed the program, no listing")

        # Python.
        interp = resolve_or_skip(a.interp)
        d = os.path.join(tmp, "py")
        os.mkdir(d)
        out, rc, events, err = signalled_run([interp, PROG, "dump"],
                                             shim_env(a.shim, d, FORKSAFE_DUMP_SIGNAL="USR2"), d)
        if rc != 0:
            fail("py dump: exit %r after the signal" % rc, events, extra=out + err)
        daemon = int(re.search(r"DAEMON (\d+)", out).group(1))
        main_tid = int(re.search(r"MAIN (\d+)", out).group(1))
        lists = [e for e in events if e["event"] == "thread_list"]
        if len(lists) != 1:
            fail("py dump: expected one thread_list event", events)
        ev = lists[0]
        by_tid = {t["tid"]: t for t in ev.get("threads", [])}
        if ev.get("threads_total") != 2 or set(by_tid) != {daemon, main_tid}:
            fail("py dump: expected the main thread %d and the daemon %d" % (main_tid, daemon), [ev])
        for t in ev["threads"]:
            check_thread_fields(ev, t)
        t = by_tid[daemon]
        if t.get("python_name") != "idle-daemon" or t["state"] != "idle":
            fail("py dump: the daemon should be listed as python_name 'idle-daemon', idle", [ev])
        if by_tid[main_tid]["state"] != "busy":
            fail("py dump: the main thread took the signal: busy", [ev])
        print("ok: Python: thread_list with MainThread (busy) and idle-daemon (idle, python_name known)")


if __name__ == "__main__":
    main()
