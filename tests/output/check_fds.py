#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The library keeps no descriptor open in the program: what the program sees in /proc/self/fd is
# what it would see without the library.
#
# The threat: programs that count on their descriptor numbers. A daemon that closes fds 3..N and
# reopens its files expecting 3, 4, 5; test suites and sandboxes that assert no descriptor leaked
# (pytest's fd-leak plugins, systemd's fd store, sshd's closefrom checks); programs that pass
# every descriptor above 2 to a child (LISTEN_FDS socket activation counts them) or that
# dup2 onto a fixed number and are surprised the number was taken. A descriptor held by an
# LD_PRELOAD library also keeps a log file (or a terminal, a pipe to a parent that waits for EOF)
# open after the program meant to let go of it: `cmd 2>&1 | tee` never sees end of file while a
# daemonised grandchild keeps a dup of stderr.
#
# The contract checked: a program lists /proc/self/fd (without the descriptor it lists with) at
# start, in a forked child after that child's fork report was written, after a lock_repaired, and
# in the parent at the end. Under the shim -- reports to stderr (text), to a FORKSAFE_LOG file
# (JSON), to a per-process %p file -- each list has exactly the descriptors of the same run
# without the shim (0, 1, 2). The runs with the shim must have written the fork report and the
# repair, so the lists are taken where it matters.
#   check_fds.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import glob
import os
import re
import sys
import tempfile

from forksafe_test import base_env, driver_args, fail, read, run_cases, run_ok, shim_env

STAGES = ["start", "child-after-fork-report", "child-after-lock-repaired", "parent-end"]


def fd_lists(out):
    """{stage: {fd: target}} from the program's FDS lines."""
    found = {}
    for m in re.finditer(rb"^FDS (\S+)((?: \d+=\S*)*)$", out, re.M):
        found[m.group(1).decode()] = {int(f): t.decode("utf-8", "replace") for f, t in
                                      re.findall(rb" (\d+)=(\S*)", m.group(2))}
    return found


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()

    r = run_ok([emitter, "fds"], base_env(), "emitter fds without the shim")
    reference = fd_lists(r.out)
    if sorted(reference) != sorted(STAGES):
        print("FAIL: the program did not list its descriptors at every stage without the shim")
        print(r.text())
        sys.exit(1)
    print("without the shim: " + "; ".join("%s %s" % (s, sorted(reference[s])) for s in STAGES))

    def compare(r, label):
        got = fd_lists(r.out)
        diffs = []
        for s in STAGES:
            if s not in got:
                diffs.append("%s: not listed" % s)
                continue
            extra = {f: t for f, t in got[s].items() if f not in reference[s]}
            missing = sorted(set(reference[s]) - set(got[s]))
            if extra or missing:
                diffs.append("%s: %s%s" % (s, "extra " + ", ".join("%d -> %s" % kv for kv in sorted(extra.items()))
                                          if extra else "", " missing %s" % missing if missing else ""))
        if diffs:
            fail("descriptors differ from the run without the shim:\n  " + "\n  ".join(diffs), r.text())

    def with_stderr():
        r = run_ok([emitter, "fds"], shim_env(a.shim), "emitter fds")
        if b"forked child" not in r.err or b"repaired semaphore" not in r.err:
            fail("the fork report and the repair did not reach stderr: the lists prove nothing", r.text())
        compare(r, "stderr")
        return "same descriptors at every stage"

    def with_file(name):
        def case():
            d = os.path.join(tmp.name, name.replace("%", ""))
            os.mkdir(d)
            r = run_ok([emitter, "fds"], shim_env(a.shim, FORKSAFE_LOG=os.path.join(d, name), FORKSAFE_FORMAT="json"),
                       "emitter fds")
            data = b"".join(read(p) for p in glob.glob(os.path.join(d, "*")))
            if b'"event":"fork"' not in data or b'"event":"lock_repaired"' not in data:
                fail("the fork report and the repair did not reach the log file: the lists prove nothing",
                     r.text() + "\nlog:\n" + data.decode("utf-8", "replace"))
            compare(r, name)
            return "same descriptors at every stage"
        return case

    run_cases([
        ("reports to stderr", with_stderr),
        ("reports to a FORKSAFE_LOG file", with_file("reports.jsonl")),
        ("reports to a per-process FORKSAFE_LOG file (%p)", with_file("reports-%p.jsonl")),
    ])


if __name__ == "__main__":
    main()
