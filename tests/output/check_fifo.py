#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# FORKSAFE_LOG naming a FIFO must never hang the program.
#
# The threat: log pipelines. People point FORKSAFE_LOG at a named pipe read by a log shipper
# (`mkfifo /run/app.log; vector --input /run/app.log`). When the shipper is not running yet, has
# crashed, or stalls (its pipe is full), an open(O_WRONLY) on the FIFO blocks until a reader
# appears and a write(2) blocks until the reader drains it: a diagnostic library would then hang
# the very program it is diagnosing -- at load (FORKSAFE_VERBOSE), in a forked child writing its
# report (while it holds nothing but the report's attention), or at exit.
#
# The contract checked here:
#   - a FIFO with no reader: the program finishes (at load with FORKSAFE_VERBOSE=1, when a forked
#     child reports, at exit with a busy thread cut off); exactly one warning line on stderr, and it
#     names FORKSAFE_LOG; the reports then go to stderr;
#   - control: a FIFO with a reader that reads gets the reports (FIFOs are used, not refused);
#   - a FIFO whose reader stops reading (its pipe is full): the program finishes; the reports that
#     would block are dropped, with exactly one warning line; nothing half-written reaches the pipe.
# The driver never reads the FIFO (and, for "no reader", never opens it): only the library could.
#   check_fifo.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import errno
import os
import stat
import tempfile

from forksafe_test import driver_args, fail, pids, report_lines, run, run_cases, shim_env, warnings

TIMEOUT = 10  # a program that does not hang is done in a fraction of a second


def run_bounded(cmd, env, label="the program"):
    r = run(cmd, env, timeout=TIMEOUT)
    if r.hung:
        fail("the program hung (killed after %d s): FORKSAFE_LOG on a FIFO blocked it" % TIMEOUT, r.text())
    if r.rc != 0:
        fail("exit status %r" % r.rc, r.text())
    return r


def one_log_warning(r):
    w = warnings(r.err)
    if len(w) != 1:
        fail("expected exactly one warning line on stderr, got %d" % len(w), r.text())
    if b"FORKSAFE_LOG" not in w[0]:
        fail("the warning does not name FORKSAFE_LOG: %r" % w[0], r.text())


def fill(fifo):
    """Opens a reader that never reads and fills its pipe to the last byte. Returns (reader fd,
    bytes written)."""
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    filled = 0
    for chunk in (65536, 4096, 1):
        while True:
            try:
                filled += os.write(wfd, b"F" * chunk)
            except OSError as e:
                if e.errno != errno.EAGAIN:
                    raise
                break
    os.close(wfd)
    return rfd, filled


def drain(rfd):
    data = b""
    while True:
        try:
            chunk = os.read(rfd, 65536)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return data
            raise
        if not chunk:
            return data
        data += chunk


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()
    fifo = os.path.join(tmp.name, "reports.fifo")
    os.mkfifo(fifo, 0o600)

    def env(**kw):
        return shim_env(a.shim, FORKSAFE_LOG=fifo, **kw)

    # ---- no reader: the driver never opens the FIFO ----
    def no_reader_load():
        r = run_bounded(["/bin/true"], env(FORKSAFE_VERBOSE=1))
        one_log_warning(r)
        if not any(b"setting FORKSAFE_MODE=" in ln for ln in report_lines(r.err)):
            fail("the settings did not reach stderr", r.text())
        return "finished in %.2f s, one warning, settings on stderr" % r.seconds

    def no_reader_fork():
        r = run_bounded([emitter, "fork", "3"], env())
        one_log_warning(r)
        child = pids(r.out, "CHILD")[0]
        mine = [ln for ln in report_lines(r.err) if ln.startswith(b"forksafe[%d]:" % child)]
        if not any(b"forked child %d" % child in ln for ln in mine) or \
                sum(b"lost thread" in ln for ln in mine) != 3:
            fail("the child's fork report (3 lost threads) did not reach stderr", r.text())
        return "finished in %.2f s, one warning, report on stderr" % r.seconds

    def no_reader_exit():
        r = run_bounded([emitter, "exitwith", "exit", "spin", "pipe"], env())
        one_log_warning(r)
        if not any(b"spin-worker" in ln for ln in report_lines(r.err)):
            fail("the exit report (listing spin-worker) did not reach stderr", r.text())
        if not stat.S_ISFIFO(os.stat(fifo).st_mode):
            fail("the FIFO was replaced by something else")
        return "finished in %.2f s, one warning, report on stderr" % r.seconds

    # ---- a reader that stopped reading: its pipe is full ----
    def full(cmd, **settings):
        def case():
            rfd, filled = fill(fifo)
            try:
                r = run_bounded(cmd, env(**settings))
                w = warnings(r.err)
                if len(w) != 1:
                    fail("expected exactly one warning line (the reports dropped), got %d" % len(w), r.text())
                data = drain(rfd)
            finally:
                os.close(rfd)
            extra = data.replace(b"F", b"")
            if len(data) != filled or extra:
                fail("the full FIFO received report bytes: %d besides the %d filler bytes"
                     % (len(data) - filled + len(extra), filled), extra[:400])
            return "finished in %.2f s, one warning, nothing but the filler in the pipe" % r.seconds
        return case

    # ---- control: a FIFO with a reader gets the reports (FIFOs are honoured, not refused) ----
    def with_reader():
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # no end of file while the program runs
        try:
            r = run_bounded([emitter, "repair"], env())
            os.close(keep)
            keep = -1
            data = drain(rfd)
        finally:
            if keep >= 0:
                os.close(keep)
            os.close(rfd)
        if warnings(r.err) or report_lines(r.err):
            fail("with a reader, the reports or a warning went to stderr", r.text())
        child = pids(r.out, "CHILD")[0]
        if b"forksafe[%d]: process" % child not in data or b"repaired semaphore" not in data:
            fail("the reader did not get the fork report and the repair", data)
        return "the reader got the fork report and the repair"

    run_cases([
        ("control: a FIFO with a reader", with_reader),
        ("no reader, FORKSAFE_VERBOSE=1 at load", no_reader_load),
        ("no reader, a child's fork report", no_reader_fork),
        ("no reader, an exit report", no_reader_exit),
        ("full pipe, fork report then lock_repaired in one child", full([emitter, "repair"])),
        ("full pipe, an exit report", full([emitter, "exitwith", "exit", "spin", "pipe"])),
        ("full pipe, FORKSAFE_VERBOSE=1 at load", full(["/bin/true"], FORKSAFE_VERBOSE=1)),
    ])


if __name__ == "__main__":
    main()
