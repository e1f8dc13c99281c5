#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Settings text that does not fit: a FORKSAFE_LOG whose `%p` expansion is too long, and a setting
# value that is huge and full of newlines.
#
# The threats: a path cut at a buffer boundary opens a DIFFERENT file than the one configured
# (`/var/log/app/fs-1234...` cut to `/var/log/app/fs-12`, or to a directory name's prefix): the
# reports land in a file nobody looks at, or several processes share a cut name and interleave. And
# a warning that echoes an environment variable verbatim lets whoever controls the environment
# (a CGI variable, a container spec, a CI job) write 10 KB and forged lines into the log of a
# process, or flood it; the echo must be short, escaped, one line.
#
# The contract checked:
#   - FORKSAFE_LOG with 200 `%p`: refused with exactly one warning line (naming FORKSAFE_LOG); the
#     report goes to stderr; no file appears;
#   - FORKSAFE_LOG whose expansion crosses the library's path buffer (existing directories of 440
#     bytes, then 33 `%p` and ".log"): no file with a cut name appears. Either the whole expanded
#     name is used (that file alone, holding the report), or it is refused as above;
#   - FORKSAFE_MODE (and FORKSAFE_LOG, FORKSAFE_FORMAT) set to 10 KB of text with newlines,
#     carriage returns and escape sequences: stderr holds exactly one line, the warning; it names
#     the variable; at most 100 bytes of the value appear in it; no control byte appears raw.
#   check_limits.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import (driver_args, fail, lines, pids, read, report_lines, run_cases, run_ok, shim_env,
                           warnings)

CHUNK = "abcdefghi\n"                          # 10 bytes; a run of them marks the value in the line
BAD = "\r\x1b[2J\x1b[31m" + CHUNK * 1024       # about 10 KB: screen-clearing escapes, newlines


def all_files(top):
    found = []
    for root, dirs, files in os.walk(top):
        found += [os.path.join(root, f) for f in files]
    return found


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()
    top = tmp.name

    def refused_or_whole(log, expanded_for):
        """Runs emitter fork 2 with FORKSAFE_LOG=log. Either no file appears (one warning naming
        FORKSAFE_LOG, the report on stderr), or exactly the file with the whole expanded name of
        the parent or the child, holding the report."""
        before = set(all_files(top))
        r = run_ok([emitter, "fork", "2"], shim_env(a.shim, FORKSAFE_LOG=log), "emitter fork 2")
        parent, child = pids(r.out, "PARENT")[0], pids(r.out, "CHILD")[0]
        new = sorted(set(all_files(top)) - before)
        whole = {expanded_for(parent), expanded_for(child)}
        cut = [f for f in new if f not in whole]
        if cut:
            fail("a file with a cut name appeared: ...%s (%d bytes; the whole name would be %d)"
                 % (cut[0][-60:], len(cut[0]), len(expanded_for(child))), r.text())
        report = b"forksafe[%d]: process" % child
        if new:
            if warnings(r.err):
                fail("the whole name was used, yet there is a warning", r.text())
            if not any(report in read(f) for f in new):
                fail("the file with the whole name does not hold the report", r.text())
            return "the whole expanded name (%d bytes) was used" % len(expanded_for(child))
        w = warnings(r.err)
        if len(w) != 1 or b"FORKSAFE_LOG" not in w[0]:
            fail("refused: expected exactly one warning line naming FORKSAFE_LOG, got %d" % len(w), r.text())
        if not any(ln.startswith(report) for ln in report_lines(r.err)):
            fail("refused: the report did not go to stderr", r.text())
        return "refused, one warning, report on stderr, no file"

    def many_p():
        d = os.path.join(top, "many")
        os.mkdir(d)
        log = os.path.join(d, "%p" * 200)
        return refused_or_whole(log, lambda pid: os.path.join(d, str(pid) * 200))

    def crosses_buffer():
        # Existing directories up to exactly 440 bytes, then the name: the setting (510 bytes)
        # is valid; the expansion is 440 + 33 x (digits of the pid) + 4 bytes.
        prefix, left = top, 440 - len(top)
        while left > 0:  # components of at most 200 bytes, each "/" + name
            step = left if left <= 201 else (201 if left - 201 >= 2 else 199)
            prefix = os.path.join(prefix, "d" * (step - 1))
            os.mkdir(prefix)
            left -= step
        assert len(prefix) == 440, len(prefix)
        log = prefix + "/" + "%p" * 33 + ".log"
        assert len(log) < 512
        return refused_or_whole(log, lambda pid: prefix + "/" + str(pid) * 33 + ".log")

    def bad_value(var):
        def case():
            r = run_ok(["/bin/true"], shim_env(a.shim, **{var: BAD}), "/bin/true")
            ls = lines(r.err)
            if not r.err.endswith(b"\n") or len(ls) != 1:
                fail("stderr should be exactly one line (the warning), it has %d line breaks"
                     % r.err.count(b"\n"), r.text())
            line = ls[0]
            if not line.startswith(b"forksafe[") or var.encode() not in line:
                fail("the line is not a warning naming %s" % var, r.text())
            raw = sorted({c for c in line if c < 0x20 or c == 0x7f})
            if raw:
                fail("control bytes appear raw in the warning: %r" % [hex(c) for c in raw], r.text())
            echoed = line.count(b"abcdefghi")
            if echoed > 10:
                fail("the warning echoes about %d bytes of the value (at most 100 allowed); it is %d bytes long"
                     % (echoed * len(CHUNK), len(line)), line[:300])
            if len(line) > 600:
                fail("the warning is %d bytes long" % len(line), line[:300])
            return "one line of %d bytes, %d bytes of the value echoed" % (len(line), echoed * len(CHUNK))
        return case

    run_cases([
        ("FORKSAFE_LOG with 200 %p", many_p),
        ("FORKSAFE_LOG whose expansion crosses the path buffer", crosses_buffer),
        ("FORKSAFE_MODE of 10 KB with newlines", bad_value("FORKSAFE_MODE")),
        ("FORKSAFE_LOG of 10 KB with newlines", bad_value("FORKSAFE_LOG")),
        ("FORKSAFE_FORMAT of 10 KB with newlines", bad_value("FORKSAFE_FORMAT")),
    ])


if __name__ == "__main__":
    main()
