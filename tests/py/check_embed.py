#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The embedded-interpreter case (tests/c/embed.c) on one interpreter's libpython: without the shim
# the child of a fork from C hangs on a lock a Python thread held; with it the child finishes and
# the report names the Python thread and the line it was on.
#   check_embed.py --interp debian|pyenv:X.Y --bin build/tests/c/embed --shim libforksafe.so
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interpreters  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interp", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    interp = interpreters.resolve(a.interp)
    if interp is None:
        print("SKIP: interpreter %s is not on this machine" % a.interp)
        sys.exit(77)
    lib = subprocess.check_output([interp, "-c", "import os, sysconfig as s; "
                                   "print(os.path.join(s.get_config_var('LIBDIR'), s.get_config_var('INSTSONAME')))"],
                                  universal_newlines=True, timeout=60).strip()
    if not os.path.exists(lib):
        print("SKIP: %s has no shared libpython (%s)" % (interp, lib))
        sys.exit(77)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD", "PYTHON"))}
    for mode in ("local", "global"):
        p = subprocess.run([a.bin, lib, mode], env=base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=60)
        if p.returncode != 3:
            sys.exit("FAIL (%s): without the shim the child should hang: exit %d\n%s" % (mode, p.returncode, p.stdout))
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(base, LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_FORMAT="json",
                       FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"))
            p = subprocess.run([a.bin, lib, mode], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=60)
            events = []
            for path in glob.glob(os.path.join(tmp, "*.jsonl")):
                events += [json.loads(l) for l in open(path)]
        if p.returncode != 0:
            sys.exit("FAIL (%s): with the shim: exit %d\n%s\n%r" % (mode, p.returncode, p.stdout, events))
        forks = [e for e in events if e["event"] == "fork"]
        lost = [t for f in forks for t in f["lost_threads"] if t.get("python_name") == "embedded-holder"]
        want = {"file": "<string>", "function": "embedded_holder", "line": 7}
        if len(forks) != 1 or not lost or want not in lost[0].get("python_stack", []):
            sys.exit("FAIL (%s): the report should name 'embedded-holder' at <string> line 7: %r" % (mode, events))
        repairs = [e for e in events if e["event"] == "lock_repaired"]
        if not repairs or repairs[0].get("owner_python_name") != "embedded-holder":
            sys.exit("FAIL (%s): the repair should name 'embedded-holder': %r" % (mode, events))
        print("ok (%s): %s" % (mode, lib))


if __name__ == "__main__":
    main()
