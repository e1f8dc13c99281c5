#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# tests/repair/held_lock.py (a thread holds a lock of KIND at os.fork) inside the Debian roots of
# scripts/make-roots.sh, without and with the shim built on this host.
#
#   check_lock_kinds.py --shim LIB [--root NAME]... [--kind KIND]...   prints a table, exits 0
#   check_lock_kinds.py --shim LIB --root NAME --kind KIND --test [--known-gap]
#
# --test (one meson test, `root-NAME-KIND`): without the shim the child must hang (logging: finish,
# CPython re-initialises its locks), with it finish with a `lock_repaired` event. Exit 0 pass,
# 1 fail, 77 the root is absent. --known-gap is for a kind today's shim cannot repair (a Lock taken
# by a bare acquire() with no try/finally on 3.13.1+: a PyMutex, no owner, no proof): meson marks it should_fail, and this
# script then exits 1 only if the known gap shows exactly (the child hangs both ways), and 0 if
# anything else happens, which meson reports as an unexpected pass: time to look again.
import argparse
import json
import os
import sys

from forksafe_test import ROOT_NAMES, TESTS, preload, require_root, root_path, run_in_root

HELD_LOCK = os.path.join(TESTS, "repair", "held_lock.py")
KINDS = ("lock", "lock-bare", "lock-with", "rlock", "logging", "queue", "condition", "condition-lock", "semaphore", "print")
TIMEOUT = 90  # seconds for one run inside a root: held_lock.py bounds itself well within this


def python_version(root):
    r = run_in_root(root, ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], 60)
    if r.rc != 0:
        raise SystemExit("FAIL: python3 --version in %s: %r %s" % (root, r.rc, r.err))
    return tuple(int(x) for x in r.out.split("."))


def known_gap(kind, version):
    return kind == "lock-bare" and version >= (3, 13, 1)  # no with, no try/finally: nothing proves the holder


def scenario(root, kind, shim, hang_after):
    """One held_lock.py run; returns (outcome, lock_repaired types, output for failures).
    outcome: 'hung', 'finished', 'finished, child-failed N', or 'error: ...'."""
    env = {"PYTHONDONTWRITEBYTECODE": "1"}  # the checkout is read-only inside
    if shim:
        env.update(LD_PRELOAD=preload(shim), FORKSAFE_FORMAT="json", FORKSAFE_LOG="stderr")
    r = run_in_root(root, ["python3", HELD_LOCK, kind, "--hang-after", str(hang_after)], TIMEOUT, env=env)
    shown = "stdout:\n%s\nstderr:\n%s" % (r.out, r.err)
    results = [l.split(None, 1)[1] for l in r.out.splitlines() if l.startswith("RESULT ")]
    if r.hung or r.rc != 0 or not results:
        return "error: status %s, results %r" % ("timeout" if r.hung else r.rc, results), [], shown
    events = []
    for line in r.err.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    repaired = sorted(set(e.get("type", "?") for e in events if e.get("event") == "lock_repaired"))
    return ", ".join(results), repaired, shown


def check(root, kind, shim, version, gap):
    """Runs both ways; returns (row, problems)."""
    want_without = "finished" if kind == "logging" else "hung"
    want_with = "hung" if gap else "finished"
    without, _, out1 = scenario(root, kind, None, 2.0 if want_without == "hung" else 20.0)
    with_, repaired, out2 = scenario(root, kind, shim, 2.0 if want_with == "hung" else 20.0)
    problems = []
    if without != want_without:
        problems.append("without shim: want %s, got %s\n%s" % (want_without, without, out1))
    if with_ != want_with:
        problems.append("with shim: want %s, got %s\n%s" % (want_with, with_, out2))
    elif want_with == "finished" and want_without == "hung" and not repaired:
        problems.append("with shim: no lock_repaired event\n%s" % out2)
    verdict = "UNEXPECTED" if problems else ("known gap" if gap else "as expected")
    row = (root, ".".join(map(str, version)), kind, without, with_, ",".join(repaired) or "-", verdict)
    return row, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shim", required=True, help="libforksafe.so built on this host")
    ap.add_argument("--root", action="append", choices=ROOT_NAMES)
    ap.add_argument("--kind", action="append", choices=KINDS)
    ap.add_argument("--test", action="store_true", help="one root and kind: exit status is the verdict")
    ap.add_argument("--known-gap", action="store_true", help="with --test: see the header")
    a = ap.parse_args()
    shim = os.path.abspath(a.shim)
    names, kinds = a.root or list(ROOT_NAMES), a.kind or list(KINDS)
    if a.test and (len(names) != 1 or len(kinds) != 1):
        ap.error("--test takes one --root and one --kind")
    if not os.path.exists(shim):
        print("FAIL: no shim at %s" % shim)
        return 1
    rows, problems = [], []
    for name in names:
        if a.test:
            require_root(name)
        elif root_path(name) is None:
            print("(root %s absent: scripts/make-roots.sh %s)" % (name, name))
            continue
        version = python_version(name)
        for kind in kinds:
            gap = a.known_gap if a.test else known_gap(kind, version)
            row, p = check(name, kind, shim, version, gap)
            rows.append(row)
            problems += ["%s/%s %s" % (name, kind, x) for x in p]
    head = ("root", "python", "kind", "without shim", "with shim", "repaired", "verdict")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for p in problems:
        print("\n" + p)
    if not a.test:
        return 0
    if a.known_gap:
        print("known gap %s" % ("confirmed (expected failure)" if not problems else "NOT seen: look again"))
        return 1 if not problems else 0
    print("PASS" if not problems else "FAIL")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
