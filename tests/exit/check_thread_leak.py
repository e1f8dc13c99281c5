#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Thread-count warnings on a real leak: py_thread_leak.py (Debian's python3 + python3-pymongo)
# creates a MongoClient per loop iteration (no server: each still starts its two monitor threads,
# pymongo_server_monitor_thread and pymongo_kill_cursors_thread) until it has 3N live threads,
# with FORKSAFE_THREADS_WARN=N (N=20). Checked:
#   - exactly one "threads" event at 20 and one at 40, none at 80 (never reached);
#   - count >= threshold; groups largest first; the pymongo groups hold the other threads;
#   - the largest group is one of pymongo's thread names, and its app_frame is the program's line
#     that calls MongoClient (MARK:client, in leak()); so is every pymongo group's (the server
#     monitor is started 9 calls below that line, deeper than the default FORKSAFE_STACK_DEPTH);
#   - the thread names are folded: no digits in a group's python_name;
#   - FORKSAFE_THREADS_WARN unset (default 100, never reached) or 0 (off): no "threads" event.
#   check_thread_leak.py --shim build/lib/libforksafe.so [--interp debian]
import os
import re
import tempfile

from forksafe_test import (base_env, driver_args, fail, mark, read_events, resolve_or_skip, run_done,
                           shim_env, skip)

HERE = os.path.dirname(os.path.abspath(__file__))

PROG = os.path.join(HERE, "py_thread_leak.py")
N = 20
LIMIT = 3 * N
PYMONGO_NAMES = {"pymongo_server_monitor_thread", "pymongo_kill_cursors_thread"}


def main():
    a = driver_args("shim", interp="debian")
    interp = resolve_or_skip(a.interp)
    rc, out, err = run_done([interp, "-c", "import pymongo"], base_env(), timeout=60, text=True)
    if rc != 0:
        skip("pymongo is not importable by %s (Debian: apt-get install python3-pymongo)" % interp)
    line = mark(PROG, "client")
    want_app = {"file": PROG, "line": line, "function": "leak"}

    def leak(settings, tag, tmp):
        d = os.path.join(tmp, tag)
        os.mkdir(d)
        env = shim_env(a.shim, d, **settings) if settings is not None else base_env()
        rc, out, err = run_done([interp, PROG, str(LIMIT)], env, timeout=120, text=True)
        if rc != 0:
            fail("%s: exit %d" % (tag, rc), extra=out + err)
        m = re.search(r"CLIENTS (\d+) THREADS (\d+)", out)
        if not m or int(m.group(2)) < LIMIT:
            fail("%s: the program did not reach %d threads" % (tag, LIMIT), extra=out + err)
        return read_events(d) if settings is not None else []

    with tempfile.TemporaryDirectory() as tmp:
        leak(None, "plain", tmp)
        events = leak({"FORKSAFE_THREADS_WARN": N}, "warn", tmp)
        default = leak({}, "default", tmp)
        off = leak({"FORKSAFE_THREADS_WARN": 0}, "off", tmp)

    warns = [e for e in events if e["event"] == "threads"]
    if sorted(e.get("threshold") for e in warns) != [N, 2 * N]:
        fail("expected one threads event at %d and one at %d" % (N, 2 * N), warns)
    for ev in sorted(warns, key=lambda e: e["threshold"]):
        th = ev["threshold"]
        groups = ev.get("groups")
        if not isinstance(ev.get("count"), int) or ev["count"] < th or not groups:
            fail("threads event at %d: count must be >= threshold, groups not empty" % th, [ev])
        counts = [g["count"] for g in groups]
        if counts != sorted(counts, reverse=True):
            fail("threads event at %d: groups must come largest first" % th, [ev])
        if sum(counts) > ev["count"]:
            fail("threads event at %d: the groups hold more threads than count" % th, [ev])
        for g in groups:
            for k in ("count", "start", "python_name", "created_at", "app_frame"):
                if k not in g:
                    fail("threads event at %d: a group has no %r" % (th, k), [ev])
            if g["python_name"] and re.search(r"\d", g["python_name"]):
                fail("threads event at %d: python_name %r is not folded" % (th, g["python_name"]), [ev])
        top = groups[0]
        if top["python_name"] not in PYMONGO_NAMES:
            fail("threads event at %d: the largest group should be pymongo's, is %r" % (th, top["python_name"]), [ev])
        mongo = [g for g in groups if g["python_name"] in PYMONGO_NAMES]
        if sum(g["count"] for g in mongo) < th - 1:
            fail("threads event at %d: pymongo's groups should hold all but the main thread" % th, [ev])
        for g in mongo:
            if g["app_frame"] != want_app:
                fail("threads event at %d: group %r: app_frame should be %r" % (th, g["python_name"], want_app), [ev])
            if not g["created_at"] or not g["created_at"][0]["file"].endswith("threading.py"):
                fail("threads event at %d: group %r: created_at should start in threading.py (Thread.start)"
                     % (th, g["python_name"]), [ev])
        print("ok: threads event at %d (count %d): %s" % (th, ev["count"], ", ".join(
            "%d x %s" % (g["count"], g["python_name"]) for g in groups)))
    print("ok: app_frame of the pymongo groups: %s:%d in leak()" % (PROG, line))
    for tag, evs in (("default (100)", default), ("FORKSAFE_THREADS_WARN=0", off)):
        w = [e for e in evs if e["event"] == "threads"]
        if w:
            fail("%s with %d threads: no threads event expected" % (tag, LIMIT + 1), w)
    print("ok: no threads event with the default threshold or with 0")


if __name__ == "__main__":
    main()
