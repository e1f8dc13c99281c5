#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# A program that closes every descriptor above 2 at start (as daemons, sshd, systemd services,
# `closefrom(3)` / close_range callers and Python's subprocess with close_fds do in the child
# before exec) still gets its reports on stderr -- as long as fd 2 is still the stderr it started
# with.
#
# The threat: the library loses its reports exactly in the programs that most need them: a
# daemon whose workers hang after fork writes nothing, because the library wrote through its own
# duplicate of stderr, and that duplicate was closed. The opposite mistake is as bad: writing to
# "fd 2" blindly after the program pointed fd 2 somewhere else (its own data file, a socket)
# corrupts the program's output. And a number the library used to own may now be the program's
# own file: nothing of ours may land there.
#
# The contract checked:
#   - plain: close every fd >= 3, then a forked child reports: the report arrives on stderr;
#   - reuse: close every fd >= 3, open a data file (it gets fd 3) and write to it, then a report:
#     the report arrives on stderr, the data file holds only the program's lines;
#   - redirect (control): close every fd >= 3, dup2 a file onto fd 2 (fd 2 is no longer the
#     original stderr), then a report: nothing of ours in that file (today's documented rule: a
#     program that points fd 2 elsewhere does not receive report lines);
#   - with FORKSAFE_LOG=file: close every fd >= 3, then a report: it arrives in the file.
#   check_daemon_fds.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import driver_args, fail, pids, read, report_lines, run_cases, run_ok, shim_env


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()

    def on_stderr(r):
        child = pids(r.out, "CHILD")[0]
        if not any(ln.startswith(b"forksafe[%d]: process" % child) for ln in report_lines(r.err)):
            fail("the child's fork report did not arrive on stderr", r.text())
        return child

    def plain():
        r = run_ok([emitter, "daemon", "plain"], shim_env(a.shim), "emitter daemon plain")
        on_stderr(r)
        return "the report arrived on stderr"

    def reuse():
        data = os.path.join(tmp.name, "data.txt")
        r = run_ok([emitter, "daemon", "reuse", data], shim_env(a.shim), "emitter daemon reuse")
        if read(data) != b"program data\n" * 2:
            fail("the program's file (fd 3) holds something else", read(data))
        on_stderr(r)
        return "the report arrived on stderr, fd 3's file untouched"

    def redirect():
        other = os.path.join(tmp.name, "other-stderr.txt")
        r = run_ok([emitter, "daemon", "redirect", other], shim_env(a.shim), "emitter daemon redirect")
        if read(other) != b"program stderr\n":
            fail("the file the program put on fd 2 holds something of ours", read(other))
        if r.err:
            fail("the original stderr was closed by the program, yet something arrived", r.text())
        return "nothing of ours in the program's fd 2 file"

    def to_file():
        log = os.path.join(tmp.name, "reports.log")
        r = run_ok([emitter, "daemon", "plain"], shim_env(a.shim, FORKSAFE_LOG=log), "emitter daemon plain")
        child = pids(r.out, "CHILD")[0]
        if not os.path.exists(log) or b"forksafe[%d]: process" % child not in read(log):
            fail("the report did not arrive in the FORKSAFE_LOG file", r.text())
        return "the report arrived in the file"

    run_cases([
        ("closes fds >= 3, reports to stderr", plain),
        ("closes fds >= 3 and reuses fd 3 for its data", reuse),
        ("control: closes fds >= 3 and points fd 2 at a file", redirect),
        ("closes fds >= 3, FORKSAFE_LOG file", to_file),
    ])


if __name__ == "__main__":
    main()
