#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A report names the process that writes it, also in a child made without glibc's fork().
#
# The threat: processes created by the raw system call, so that no atfork handler runs: Go and
# Rust runtimes, seccomp sandboxes, JITs and container runtimes (runc's nsexec uses clone
# directly), libraries that call syscall(SYS_fork) or clone() to avoid atfork deadlocks. The
# library's cached pid is then the parent's: the child's reports carry the parent's pid, so an
# operator reading "forksafe[1234]: process 1234 ends" looks at the wrong process (the parent,
# alive and well) and per-pid log files (%p) mix two processes.
#
# The contract checked: a process whose main thread has used a lock (the library knows it) and
# that has two idle threads calls syscall(SYS_fork); the child starts a thread that spins, then
# _exits while it spins (a busy thread cut off: an exit report is due). That report, in JSON, has
# "pid" = the child's real pid; in text, every line is prefixed forksafe[CHILD]. With --tids,
# instead (a separate test, so each cause fails on its own): the report lists the spinning thread
# by its real tid and not the exiting thread itself (the library's cached tid is the parent's too).
#   check_pid_label.py [--tids] --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import re
import tempfile

from forksafe_test import driver_args, fail, json_lines, lines, pids, read, run_cases, run_ok, shim_env


def main():
    a = driver_args("bin", "shim", tids=dict(action="store_true"))
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()

    def emit(fmt):
        log = os.path.join(tmp.name, "%s.log" % fmt)
        r = run_ok([emitter, "rawfork"], shim_env(a.shim, FORKSAFE_LOG=log, FORKSAFE_FORMAT=fmt), "emitter rawfork")
        return read(log), pids(r.out, "PARENT")[0], pids(r.out, "CHILD")[0], pids(r.out, "SPINNER")[0]

    def json_pid():
        data, parent, child, spinner = emit("json")
        exits = [e for e in json_lines(data, "the log") if e["event"] == "exit"]
        if len(exits) != 1:
            fail("expected one exit event (the child's), got %d" % len(exits), data)
        e = exits[0]
        if e["pid"] != child and not a.tids:
            fail('the child\'s exit event has "pid": %r; the child is %d%s'
                 % (e["pid"], child, " (the parent's pid)" if e["pid"] == parent else ""), data)
        if a.tids:
            tids = [t["tid"] for t in e["threads"]]
            if tids != [spinner]:
                fail("the event lists threads %r; only the spinning thread %d was cut off%s"
                     % (tids, spinner, " (the exiting thread %d is listed)" % child if child in tids else ""), data)
            return "pid %d, lists the spinner %d alone" % (child, spinner)
        return '"pid": %d, the child' % child

    def text_pid():
        data, parent, child, spinner = emit("text")
        ls = lines(data)
        if not ls:
            fail("no report at all")
        wrong = [ln for ln in ls if not ln.startswith(b"forksafe[%d]: " % child)]
        if wrong and not a.tids:
            fail("lines not prefixed forksafe[%d] (the child; the parent is %d)" % (child, parent), data)
        if a.tids:
            listed = [int(m) for m in re.findall(rb"thread (\d+) ", data)]
            if listed != [spinner]:
                fail("the report lists threads %r; only the spinning thread %d was cut off" % (listed, spinner), data)
            return "lists the spinner %d alone" % spinner
        return "every line prefixed forksafe[%d]" % child

    run_cases([
        ("JSON: exit report of a syscall(SYS_fork) child", json_pid),
        ("text: exit report of a syscall(SYS_fork) child", text_pid),
    ])


if __name__ == "__main__":
    main()
