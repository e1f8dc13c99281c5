# SPDX-License-Identifier: MIT
# Helpers shared by the tests of exit/exec reports, thread-count warnings and thread listings
# (tests/exit/check_*.py). The drivers run on any Python 3 (Debian's /usr/bin/python3 in meson);
# the programs under test pick their own interpreter.
import glob
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "py"))
import interpreters  # noqa: E402

SKIP = 77


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def fail(msg, events=(), extra=""):
    print("FAIL: " + msg)
    if extra:
        print(extra.rstrip())
    for e in events:
        print("  " + json.dumps(e))
    sys.exit(1)


def mark(path, name):
    """Line number of the `# MARK:name` (or `// MARK:name`) comment in `path`."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if "MARK:" + name in line and re.search(r"MARK:%s\b" % re.escape(name), line):
                return n
    raise SystemExit("no MARK:%s in %s" % (name, path))


def base_env():
    """The inherited environment without anything that would change what is under test."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORKSAFE_", "PYTHON", "UWSGI")) and k != "LD_PRELOAD"}
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the programs under test write nothing into the tree
    return env


def shim_env(shim, logdir, **settings):
    """Environment for a run with the shim: JSON reports, one log file per process."""
    env = base_env()
    env.update(LD_PRELOAD=os.path.abspath(shim), FORKSAFE_FORMAT="json",
               FORKSAFE_LOG=os.path.join(logdir, "log-%p.jsonl"))
    env.update({k: str(v) for k, v in settings.items()})
    return env


def one_cpu():
    """A preexec_fn that pins the child to one CPU (the first it may use)."""
    cpu = min(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {cpu})


def run(cmd, env, timeout=60, input=None, preexec_fn=None):
    """Runs cmd to completion (bounded). Returns (returncode, stdout, stderr)."""
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           input=input, universal_newlines=True, timeout=timeout,
                           preexec_fn=preexec_fn)
    except subprocess.TimeoutExpired as e:
        fail("%s did not finish within %d s\nstdout: %s\nstderr: %s"
             % (" ".join(cmd), timeout, e.stdout, e.stderr))
    return p.returncode, p.stdout, p.stderr


def read_events(logdir):
    """Every JSON event written under logdir, in file order; a line that is not JSON fails."""
    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "log-*.jsonl"))):
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    fail("%s:%d is not JSON: %r" % (path, n, line))
                for k in ("event", "time", "pid"):
                    if k not in e:
                        fail("%s:%d has no %r" % (path, n, k), [e])
                events.append(e)
    return events


def check_thread_fields(ev, thread):
    """The per-thread fields every exit/exec/thread_list entry has."""
    for k in ("tid", "name", "start", "state"):
        if k not in thread:
            fail("a thread of this %s event has no %r" % (ev["event"], k), [ev])
    if thread["state"] not in ("busy", "idle"):
        fail("state must be busy or idle, not %r" % thread["state"], [ev])
    for fr in thread.get("python_stack", []):
        if set(fr) < {"file", "line", "function"}:
            fail("python_stack frame without file/line/function: %r" % fr, [ev])


def check_exit_event(ev, how):
    """Shape of one exit/exec report: how, threads_total, a list of threads."""
    if ev.get("how") != how:
        fail("expected how %r" % how, [ev])
    if not isinstance(ev.get("threads"), list) or not isinstance(ev.get("threads_total"), int):
        fail("exit/exec events carry threads_total and a threads list", [ev])
    if ev["threads_total"] != len(ev["threads"]):
        fail("threads_total %d but %d threads listed" % (ev["threads_total"], len(ev["threads"])), [ev])
    for t in ev["threads"]:
        check_thread_fields(ev, t)


def has_frame(thread, path, function, line):
    path = os.path.realpath(path)
    return any(os.path.realpath(fr.get("file", "")) == path and fr.get("function") == function
               and fr.get("line") == line for fr in thread.get("python_stack", []))


def wait_for(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a true value, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)  # polling a condition with a deadline


def resolve_interp(name):
    path = interpreters.resolve(name)
    if path is None:
        skip("interpreter %s is not on this machine" % name)
    return path
