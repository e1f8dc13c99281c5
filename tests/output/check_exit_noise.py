#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Exit reports are for work cut off, not for idle threads: a process that ends while only idle
# threads remain writes nothing by default.
#
# The pattern: almost every real program ends with idle threads still alive -- a connection
# pool's reaper blocked on a condition variable, a logging QueueListener waiting on its queue,
# an accept loop, a multiprocessing Manager's server threads blocked in accept/recv when the
# manager is shut down. Nothing is lost when they are cut off. A report on each of those exits is
# noise that teaches operators to ignore the library, and hides the one exit that matters: a
# thread in the middle of a job (writing a file, flushing a batch, a request half-handled).
#
# The contract checked (C program tests/output/emitter.c `exitwith`, JSON, a log file per process):
#   - only idle threads (read on a pipe, pthread_cond_wait, a raw futex wait), ending by return
#     from main, exit() and _exit(): no exit event;
#   - the same with FORKSAFE_EXIT_REPORT=all (accepted: no warning): one exit event listing the
#     three, all "idle";
#   - a busy thread (spinning; or a work loop sleeping 1 ms in nanosleep) with idle ones: one exit
#     event listing the busy thread as "busy" AND the idle ones as "idle";
#   - Python (Debian's python3, pyenv's 2.7 and 3.13 where present): a multiprocessing Manager
#     started, used and shut down normally, then a second one, five times: no exit event from any
#     process. The script first checks the library is loaded in it.
#   check_exit_noise.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import glob
import os
import re
import sys
import tempfile

from forksafe_test import driver_args, fail, json_lines, read, resolve, run_cases, run_ok, shim_env, warnings

MANAGER_SCRIPT = r"""
import ctypes, multiprocessing, os, sys
sys.stdout.write("LOADED %d\n" % hasattr(ctypes.CDLL(None), "forksafe_version")); sys.stdout.flush()
if hasattr(multiprocessing, "set_start_method"):
    multiprocessing.set_start_method("fork")
m = multiprocessing.Manager()
d = m.dict(); d["a"] = 1
q = m.Queue(); q.put(2)
assert q.get() == 2 and d["a"] == 1
m.shutdown()
m2 = multiprocessing.Manager()
l = m2.list([1, 2]); l.append(3)
assert list(l) == [1, 2, 3]
m2.shutdown()
sys.stdout.write("DONE\n"); sys.stdout.flush()
"""
# Debian's python3, and pyenv's oldest and newest (2.7's Manager server ends with os._exit from a
# handler thread while another handler waits in C recv()): those present.
MANAGER_INTERPRETERS = ("debian", "pyenv:2.7", "pyenv:3.13")


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()
    n = [0]

    def events(cmd, **settings):
        n[0] += 1
        d = os.path.join(tmp.name, "run%d" % n[0])
        os.mkdir(d)
        env = shim_env(a.shim, FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(d, "log-%p.jsonl"), **settings)
        r = run_ok(cmd, env, " ".join(cmd[1:]) if len(cmd) > 1 else cmd[0], timeout=60)
        evs = []
        for p in sorted(glob.glob(os.path.join(d, "*.jsonl"))):
            evs += json_lines(read(p), os.path.basename(p))
        return r, [e for e in evs if e["event"] in ("exit", "exec")]

    def tids(r):
        return {m.group(1).decode(): int(m.group(2)) for m in re.finditer(rb"^TID (\S+) (\d+)$", r.out, re.M)}

    def listing(ev):
        return {t["name"]: t for t in ev["threads"]}

    def idle_only(end):
        def case():
            r, ends = events([emitter, "exitwith", end, "pipe", "cond", "futex"])
            if ends:
                fail("only idle threads were left, yet an exit report was written", "\n".join(map(str, ends)))
            return "no exit report"
        return case

    def idle_all():
        r, ends = events([emitter, "exitwith", "return", "pipe", "cond", "futex"], FORKSAFE_EXIT_REPORT="all")
        t = tids(r)
        if warnings(r.err):
            fail("FORKSAFE_EXIT_REPORT=all is not accepted", r.text())
        if len(ends) != 1:
            fail("FORKSAFE_EXIT_REPORT=all: expected one exit event, got %d" % len(ends), r.text())
        got = listing(ends[0])
        if sorted(got) != sorted(t) or any(got[k]["tid"] != t[k] or got[k]["state"] != "idle" for k in t):
            fail("the event should list %s, all idle" % sorted(t), str(ends[0]))
        return "one exit event listing the 3 idle threads"

    def busy(end, kinds, busy_kind):
        def case():
            r, ends = events([emitter, "exitwith", end] + kinds)
            t = tids(r)
            if len(ends) != 1:
                fail("a busy thread was cut off: expected one exit event, got %d" % len(ends), r.text())
            got = listing(ends[0])
            if sorted(got) != sorted(t):
                fail("the event should list every thread left, %s; it lists %s" % (sorted(t), sorted(got)), str(ends[0]))
            for k in t:
                want = "busy" if k == busy_kind + "-worker" else "idle"
                if got[k]["tid"] != t[k] or got[k]["state"] != want:
                    fail("%s should be listed with tid %d, %s" % (k, t[k], want), str(ends[0]))
            return "one exit event: %s busy, %s idle" % (busy_kind, ", ".join(k for k in kinds if k != busy_kind))
        return case

    def manager():
        runs, done = 5, []
        for name in MANAGER_INTERPRETERS:
            py = resolve(name)
            if py is None:
                continue
            for i in range(runs):
                r, ends = events([py, "-c", MANAGER_SCRIPT])
                if b"LOADED 1" not in r.out or b"DONE" not in r.out:
                    fail("%s: the script did not run to its end with the library loaded" % name, r.text())
                if ends:
                    fail("%s run %d: a Manager started and shut down normally wrote %d exit report(s)"
                         % (name, i + 1, len(ends)), "\n".join(str(e)[:600] for e in ends))
            done.append(name)
        if not done:
            fail("no Python interpreter to run the Manager script with")
        return "%d runs each of %s, no exit report" % (runs, ", ".join(done))

    run_cases([
        ("idle threads only, return from main", idle_only("return")),
        ("idle threads only, exit()", idle_only("exit")),
        ("idle threads only, _exit()", idle_only("_exit")),
        ("idle threads only, FORKSAFE_EXIT_REPORT=all", idle_all),
        ("a spinning thread and idle ones, return", busy("return", ["spin", "pipe", "cond"], "spin")),
        ("a nanosleep work loop and an idle thread, _exit", busy("_exit", ["sleep", "futex"], "sleep")),
        ("Python multiprocessing Manager, normal shutdown", manager),
    ])


if __name__ == "__main__":
    main()
