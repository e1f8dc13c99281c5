# SPDX-License-Identifier: MIT
# Test driver for one Python scenario (held_lock.py KIND) on one interpreter:
#
#   run_case.py --interp PATH --kind KIND --shim LIBFORKSAFE.so [--expect-hang auto|yes|no]
#
# 1. Without the shim, the scenario must print `RESULT hung`: the reproduction is real.
# 2. With LD_PRELOAD=<shim> and JSON reports to a temporary directory, it must print
#    `RESULT finished` with a child that exited 0, and the reports must hold a `fork` event
#    with a non-empty `lost_threads` list and a `lock_repaired` event.
# When no hang is expected (--expect-hang no, or `auto` for `logging` on CPython >= 3.7.4, and
# `token`), step 1 must print `RESULT finished` instead and step 2 does not require a
# `lock_repaired` event. For `token` (a spent one-time token: sem_trywait never repairs), step 2
# must show no lock event at all: neither `lock_repaired` nor `lock_orphaned`.
# Exit status: 0 pass, 1 fail, 77 skip (meson's convention). Runs under Python 3.6+.
import argparse
import json
import os
import shutil
import sys
import tempfile

from forksafe_test import (base_env, env_shown, fail, python_version, read_events, resolve_or_skip, run,
                           shim_env)

TIMEOUT = 60  # seconds for any one subprocess: a hang fails the test instead of stalling it
# held_lock.py's --hang-after: short where a hang is expected (the child is really blocked, so
# waiting longer proves nothing), generous where the child must finish (a loaded machine).
HANG_AFTER_EXPECT_HUNG = 2.0
HANG_AFTER_EXPECT_FINISHED = 20.0
HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIO = os.path.join(HERE, "held_lock.py")
KINDS = ("lock", "lock-bare", "lock-with", "rlock", "logging", "queue", "condition", "condition-lock", "semaphore", "print",
         "token")
NO_LOCK_EVENTS = ("token",)  # kinds whose child must not see any lock repaired or reported


def run_logged(cmd, env, what):
    """Runs `cmd`; returns (returncode, stdout, stderr). A timeout is a failure."""
    shown = env_shown(env)
    print("run (%s): %s%s" % (what, shown + " " if shown else "", " ".join(cmd)))
    r = run(cmd, env, timeout=TIMEOUT, text=True)
    if r.hung:
        fail("%s: no exit within %d s" % (what, TIMEOUT), extra=r.text())
    return r.rc, r.out, r.err


def expect_hang(kind, version, choice):
    if choice != "auto":
        return choice == "yes"
    if kind == "token":
        return False  # acquire(False) never blocks: the child finishes both ways
    if kind == "logging":
        # CPython 3.7.4+ re-initialises every logging handler's lock in the child
        # (os.register_at_fork in logging/__init__.py), so there the child finishes even without
        # the shim. The case still runs both ways: it must then finish without the shim too
        # (the scenario is not broken) and with it (the shim does no harm); nothing is repaired.
        return version < (3, 7, 4)
    return True


def scenario(interp, kind, env, what, hang_after):
    """Runs the scenario; returns its RESULT lines. Anything but exit status 0 fails."""
    code, out, err = run_logged([interp, SCENARIO, kind, "--hang-after", str(hang_after)], env, what)
    results = [line.split(None, 1)[1] if " " in line else "" for line in out.splitlines()
               if line.startswith("RESULT")]
    if code != 0 or not results:
        fail("%s: exit status %d, results %r\nstdout:\n%s\nstderr:\n%s" % (what, code, results, out, err))
    return results, out, err


def check(interp, kind, shim, want_hang):
    # 1. without the shim
    results, out, err = scenario(interp, kind, base_env(), "without shim",
                                 HANG_AFTER_EXPECT_HUNG if want_hang else HANG_AFTER_EXPECT_FINISHED)
    want = ["hung"] if want_hang else ["finished"]
    if results != want:
        fail("without shim: expected %r, got %r\nstdout:\n%s\nstderr:\n%s" % (want, results, out, err))

    # 2. with the shim
    logdir = tempfile.mkdtemp(prefix="forksafe-py-")
    try:
        env = shim_env(shim, logdir)
        results, out, err = scenario(interp, kind, env, "with shim", HANG_AFTER_EXPECT_FINISHED)
        events = read_events(logdir)
        problems = []
        if results != ["finished"]:
            problems.append("expected ['finished'], got %r" % (results,))
        if not any(e.get("event") == "fork" and e.get("lost_threads") for e in events):
            problems.append("no 'fork' event with a non-empty 'lost_threads' list")
        if want_hang and not any(e.get("event") == "lock_repaired" for e in events):
            problems.append("no 'lock_repaired' event")
        if kind in NO_LOCK_EVENTS:
            for name in ("lock_repaired", "lock_orphaned"):
                if any(e.get("event") == name for e in events):
                    problems.append("a '%s' event: a non-blocking acquire never repairs nor reports" % name)
        if problems:
            fail("with shim: %s\nstdout:\n%s\nstderr:\n%s\nreports:" % ("; ".join(problems), out, err),
                 events or ["(none)"])
        print("reports:\n" + ("\n".join(json.dumps(e) for e in events) or "(none)"))
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description="run one held_lock.py scenario with and without the shim")
    parser.add_argument("--interp", required=True, help="the interpreter: a path, `debian` or `pyenv:X.Y` (see forksafe_test.resolve)")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--shim", required=True, help="path of libforksafe.so")
    parser.add_argument("--expect-hang", choices=("auto", "yes", "no"), default="auto",
                        help="whether the scenario hangs without the shim (auto: by kind and version)")
    args = parser.parse_args()

    args.interp = resolve_or_skip(args.interp)
    shim = os.path.abspath(args.shim)
    if not os.path.exists(shim):
        print("FAIL: shim %s does not exist" % shim)
        return 1
    version = python_version(args.interp)
    want_hang = expect_hang(args.kind, version, args.expect_hang)
    print("interpreter %s (%s), kind %s, hang expected without shim: %s"
          % (args.interp, ".".join(map(str, version)), args.kind, "yes" if want_hang else "no"))
    check(args.interp, args.kind, shim, want_hang)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
