#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The Python layer of repair on its own (CPython 3.9+): with semaphore repair off, an RLock held
# by a lost thread at os.fork is released in the child by the after-fork hook. Control: with both
# layers off the same child hangs.
#   check_rlock_layer.py --interp debian|pyenv:X.Y --shim libforksafe.so
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import interpreters  # noqa: E402


def run(interp, shim, extra, hang_after):
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD", "PYTHON"))}
        env.update(extra, LD_PRELOAD=shim, FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(tmp, "l-%p.jsonl"))
        p = subprocess.run([interp, os.path.join(HERE, "held_lock.py"), "rlock", "--hang-after", str(hang_after)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           timeout=120)
        events = []
        for path in glob.glob(os.path.join(tmp, "*.jsonl")):
            events += [json.loads(l) for l in open(path)]
    return p.stdout.split(), events


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interp", required=True)
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    interp = interpreters.resolve(a.interp)
    if interp is None:
        print("SKIP: interpreter %s is not on this machine" % a.interp)
        sys.exit(77)
    version = subprocess.check_output([interp, "-c", "import sys; print(sys.version_info[0] * 100 + sys.version_info[1])"],
                                      universal_newlines=True, timeout=60)
    if int(version) < 309:
        print("SKIP: RLock._at_fork_reinit exists from CPython 3.9")
        sys.exit(77)
    shim = os.path.abspath(a.shim)
    out, _ = run(interp, shim, {"FORKSAFE_REPAIR_SEMAPHORES": "off", "FORKSAFE_REPAIR_RLOCKS": "off"}, 2)
    if "hung" not in out:
        sys.exit("FAIL: with both layers off the child should hang: %r" % out)
    out, events = run(interp, shim, {"FORKSAFE_REPAIR_SEMAPHORES": "off"}, 20)
    repairs = [e for e in events if e["event"] == "lock_repaired"]
    if "finished" not in out:
        sys.exit("FAIL: the Python layer alone should un-stick the child: %r %r" % (out, events))
    if len(repairs) != 1 or repairs[0]["type"] != "python_rlock" or repairs[0].get("owner_python_name") != "holder":
        sys.exit("FAIL: one python_rlock repair naming 'holder': %r" % events)
    print("ok: the Python layer alone released the RLock of lost thread 'holder' on %s" % interp)


if __name__ == "__main__":
    main()
