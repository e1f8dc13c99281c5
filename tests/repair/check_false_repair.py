#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Test driver for one false_repair.py case (a correct program whose child waits on a lock a
# repair would break), on one interpreter or inside one Debian root:
#
#   check_false_repair.py --case CASE --shim LIB (--interp NAME | --root trixie|sid)
#
# Without the shim the case must print `RESULT ok` (the program is correct as written); with it,
# `RESULT ok` again and no `lock_repaired` event at all. Exit 0 pass, 1 fail, 77 skip.
import argparse
import json
import os
import tempfile

from forksafe_test import (base_env, fail, preload, read_events, require_root, resolve_or_skip, run,
                           run_in_root, shim_env)

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "false_repair.py")
TIMEOUT = 90


def result(out):
    return [l.split(None, 1)[1] for l in out.splitlines() if l.startswith("RESULT ")]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--case", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--interp")
    ap.add_argument("--root")
    a = ap.parse_args()
    shim = os.path.abspath(a.shim)
    runs = {}
    if a.root:
        require_root(a.root)
        for label, env in (("without shim", {}),
                           ("with shim", {"LD_PRELOAD": preload(shim), "FORKSAFE_FORMAT": "json",
                                          "FORKSAFE_LOG": "stderr"})):
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            r = run_in_root(a.root, ["python3", CASE, a.case], TIMEOUT, env=env)
            events = [json.loads(l) for l in r.err.splitlines() if l.startswith("{")]
            runs[label] = (r.hung, r.rc, r.out, r.err, events)
    else:
        interp = resolve_or_skip(a.interp)
        with tempfile.TemporaryDirectory() as logdir:
            for label, env in (("without shim", base_env()), ("with shim", shim_env(shim, logdir))):
                r = run([interp, CASE, a.case], env, timeout=TIMEOUT, text=True)
                runs[label] = (r.hung, r.rc, r.out, r.err, read_events(logdir) if label == "with shim" else [])
    for label, (hung, rc, out, err, events) in runs.items():
        shown = "stdout:\n%s\nstderr:\n%s" % (out, err)
        if hung or rc != 0 or result(out) != ["ok"]:
            fail("%s: %s, status %s, results %r\n%s" % (label, a.case, "hung" if hung else rc, result(out), shown))
        repaired = [e for e in events if e.get("event") == "lock_repaired"]
        if repaired:
            fail("%s: %s: a lock was repaired that the program needed as it was" % (label, a.case), repaired,
                 extra=shown)
    print("ok: %s behaves as without the shim, nothing repaired" % a.case)


if __name__ == "__main__":
    main()
