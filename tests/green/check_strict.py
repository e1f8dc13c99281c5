#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Strict mode (FORKSAFE_STRICT, FORKSAFE_ALLOW) end to end:
#   --case python  strict_suite.py, a test suite whose code forks while a library's idle thread
#                  (libmonitor.py) runs: it passes without the shim and with the shim alone; under
#                  FORKSAFE_STRICT=on the forking tests fail (children exit 70) with a report
#                  naming the thread, the subprocess test passes; with FORKSAFE_ALLOW=libmonitor-*
#                  the whole suite passes; the same through the forksafe command
#                  (`forksafe --strict -- python3 -m unittest ...`, then with --allow=libmonitor-*)
#   --case c       strict_prog: a C thread (start routine monitor_idle_loop, OS name mon-idle);
#                  a child that goes on ends with 70, one that execs at once is no error; the
#                  thread is allowed by its start routine, its OS name or a glob on the whole
#                  start text; the JSON verdict
#   --case green   gevent: a green thread carried into the child is an error only with
#                  FORKSAFE_STRICT=green, not when allowed, not when FORKSAFE_GREEN=kill stops it
#   check_strict.py --shim build/lib/libforksafe.so --case python|c|green [--bin strict_prog]
#                   [--forksafe build/tools/forksafe/forksafe]
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
SKIP = 77
STATUS = 70


def fail(msg, out=""):
    print("FAIL: " + msg)
    if out:
        print(out.rstrip()[-6000:])
    sys.exit(1)


def run(cmd, shim=None, timeout=180, **settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD"))}
    env["PYTHONPATH"] = HERE
    if shim:
        env["LD_PRELOAD"] = shim
        env.update({"FORKSAFE_" + k.upper(): v for k, v in settings.items()})
    try:
        p = subprocess.run(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        fail("timed out: " + " ".join(cmd), e.output or "")
    return p.returncode, p.stdout


def case_python(shim, forksafe=None):
    suite = [PY, "-m", "unittest", "-v", "strict_suite"]
    code, out = run(suite)
    if code != 0:
        fail("the suite fails without the shim", out)
    code, out = run(suite, shim)
    if code != 0:
        fail("the suite fails with the shim, strict mode off", out)
    code, out = run(suite, shim, strict="on")
    if code == 0 or "FAILED (failures=2)" not in out:
        fail("strict mode: expected the two forking tests to fail", out)
    for t in ["test_os_fork_child_finishes", "test_multiprocessing_process_finishes"]:
        if "FAIL: %s (strict_suite.StrictSuite" % t not in out:
            fail("strict mode: %s did not fail" % t, out)
    for want in ["AssertionError: the forked child exited with status 70",
                 "AssertionError: the worker process exited with status 70"]:
        if want not in out:
            fail("strict mode: the failure does not say %r" % want, out)
    if not any("test_subprocess_is_not_an_error" in x and x.rstrip().endswith("ok") for x in out.splitlines()):
        fail("strict mode: fork + exec (subprocess) must not be an error", out)
    for want in ["(Python 'libmonitor-idle')", "[not allowed]",
                 "strict mode (FORKSAFE_STRICT=on): 1 of them is not in FORKSAFE_ALLOW and the child goes on "
                 "running after the fork: an error; it exits with status 70"]:
        if want not in out:
            fail("strict mode: the report lacks %r" % want, out)
    code, out = run(suite, shim, strict="on", allow="other, libmonitor-*")
    if code != 0 or "[allowed]" not in out or "every one of them is in FORKSAFE_ALLOW; the child goes on" not in out:
        fail("strict mode with FORKSAFE_ALLOW=libmonitor-*: the suite should pass", out)
    if forksafe:
        cmd = [forksafe, "--library", shim, "--strict", "--"] + suite
        code, out = run(cmd)
        if code == 0 or "FAILED (failures=2)" not in out or "[not allowed]" not in out:
            fail("forksafe --strict: expected the two forking tests to fail, the thread named", out)
        code, out = run([forksafe, "--library", shim, "--strict", "--allow=libmonitor-*", "--"] + suite)
        if code != 0 or "[allowed]" not in out:
            fail("forksafe --strict --allow=libmonitor-*: the suite should pass", out)
    print("OK python: the suite fails under strict mode with a clear message and passes with the thread allowed"
          + (" (also through forksafe --strict, --allow)" if forksafe else ""))


def case_c(shim, exe):
    code, out = run([exe, "run"])
    if code != 0:
        fail("without the shim: exit %d" % code, out)
    code, out = run([exe, "run"], shim)
    if code != 0:
        fail("strict off: exit %d" % code, out)
    code, out = run([exe, "run"], shim, strict="on")
    if code != STATUS or "'mon-idle' started at monitor_idle_loop+0x0" not in out or "[not allowed]" not in out:
        fail("strict on, a child that goes on: expected status %d and the thread named" % STATUS, out)
    code, out = run([exe, "exec"], shim, strict="on")
    if code != 0 or "forksafe" in out:
        fail("strict on, fork + exec: expected no error and no report", out)
    for allow in ["monitor_idle_*", "mon-idle", "*strict_prog)", "x,mon-[a-z]dle"]:
        code, out = run([exe, "run"], shim, strict="on", allow=allow)
        if code != 0 or "[allowed]" not in out:
            fail("strict on, FORKSAFE_ALLOW=%s: expected the thread allowed" % allow, out)
    code, out = run([exe, "run"], shim, strict="on", format="json")
    ev = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    fork = [e for e in ev if e["event"] == "fork"]
    if code != STATUS or len(fork) != 1 or fork[0].get("strict") != {"not_allowed": 1, "exit_status": STATUS} or \
            [t.get("allowed") for t in fork[0]["lost_threads"]] != [False]:
        fail("JSON: expected strict {not_allowed: 1, exit_status: 70} and allowed: false", out)
    code, out = run([exe, "run"], shim, strict="on", format="json", allow="monitor_idle_loop")
    fork = [json.loads(l) for l in out.splitlines() if l.startswith('{"event":"fork"')]
    if code != 0 or len(fork) != 1 or fork[0].get("strict") != {"not_allowed": 0, "exit_status": None}:
        fail("JSON, allowed: expected strict {not_allowed: 0, exit_status: null}", out)
    print("OK c: a child that goes on ends with %d; exec is no error; allowed by routine, name and glob" % STATUS)


GREEN = r"""
from gevent import monkey; monkey.patch_all()
import os, threading, time
def listener():
    while True:
        time.sleep(0.05)
threading.Thread(target=listener, name="redis-listener", daemon=True).start()
time.sleep(0.01)
pid = os.fork()
if pid == 0:
    os._exit(0)
print("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def case_green(shim):
    if subprocess.run([PY, "-c", "import gevent"], stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: no python3-gevent")
        sys.exit(SKIP)
    cmd = [PY, "-c", GREEN]
    expect = [({"strict": "on"}, 0), ({"strict": "green"}, STATUS), ({"strict": "green", "allow": "redis-*"}, 0),
              ({"strict": "green", "green": "kill"}, 0)]
    for settings, status in expect:
        code, out = run(cmd, shim, **settings)
        if code != 0 or "child status %d" % status not in out:
            fail("%s: expected the child's status %d" % (settings, status), out)
        if status == STATUS and "carried gevent green thread" not in out or \
                status == STATUS and "strict mode (FORKSAFE_STRICT=green): 1 of them" not in out:
            fail("%s: the report does not say why" % settings, out)
    print("OK green: carried green threads count only with FORKSAFE_STRICT=green, unless allowed or stopped")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--case", choices=["python", "c", "green"], required=True)
    ap.add_argument("--bin")
    ap.add_argument("--forksafe", help="the forksafe command, for the python case")
    a = ap.parse_args()
    shim = os.path.abspath(a.shim)
    if a.case != "c" and not os.path.exists(PY):
        print("SKIP: no " + PY)
        sys.exit(SKIP)
    {"python": lambda: case_python(shim, a.forksafe and os.path.abspath(a.forksafe)), "c": lambda: case_c(shim, os.path.abspath(a.bin)),
     "green": lambda: case_green(shim)}[a.case]()


if __name__ == "__main__":
    main()
