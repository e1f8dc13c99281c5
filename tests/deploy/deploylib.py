# SPDX-License-Identifier: MIT
# Helpers for the deploy tests (tests/deploy/): the one place they share, kept in this folder so
# that the drivers stay self-contained. Python 3.6+ (the drivers run on Debian 12's 3.11).
# Every wait is bounded; no sleep decides an outcome (polling a condition until a deadline only).
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
IN_ROOT = os.path.join(REPO, "scripts", "in-root.sh")
APP_DIR = os.path.join(REPO, "examples", "docker")  # app.py: a thread holds an RLock at fork


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


# Soft checks: each prints `ok` or `FAIL` and the driver goes on, so one run shows every problem;
# end_checks() then fails the test if any did.
failures = []


def expect(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
        if detail:
            print("     " + str(detail).replace("\n", "\n     ")[:8000])


def end_checks():
    if failures:
        fail("%d check(s) failed: %s" % (len(failures), "; ".join(failures)))


def run(cmd, timeout, **kw):
    """subprocess.run with text output captured and a timeout that fails the test."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    try:
        return subprocess.run(cmd, timeout=timeout, universal_newlines=True, **kw)
    except subprocess.TimeoutExpired:
        fail("timed out after %ds: %s" % (timeout, " ".join(cmd)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, step=0.05):
    """Polls pred() until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def get(port, timeout=10):
    """One HTTP request; (status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
            return r.status, r.read().decode()
    except Exception as e:  # a timeout or a refused connection is an outcome here
        return None, repr(e)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def serve_and_query(cmd, port, env, logfile, requests=10, start_timeout=60, cwd=None, popen=None, timeout=10):
    """Starts a server (its own process group; `popen(cmd, stdout=, stderr=)` instead of
    subprocess.Popen if given), sends `requests` requests, stops it with SIGTERM (workers exit
    normally). Returns the list of (status, body)."""
    with open(logfile, "w") as out:
        if popen:
            proc = popen(cmd, stdout=out, stderr=out)
        else:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, start_new_session=True, cwd=cwd)
    try:
        if not wait_for(lambda: proc.poll() is not None or listening(port), start_timeout):
            fail("the server did not listen within %ds:\n%s" % (start_timeout, open(logfile).read()))
        if proc.poll() is not None:
            fail("the server exited with %s:\n%s" % (proc.returncode, open(logfile).read()))
        answers = [get(port, timeout) for _ in range(requests)]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        return answers
    finally:
        kill_group(proc)


# ---- Debian roots (scripts/make-roots.sh) ----

def roots_dir():
    return os.environ.get("FORKSAFE_ROOTS_DIR") or "/var/tmp/forksafe-roots"


def require_root_fs(name="trixie"):
    if os.getuid() != 0:
        skip("needs root (chroot, unshare -m)")
    p = os.path.join(roots_dir(), name)
    if not os.path.isfile(os.path.join(p, ".forksafe-root")):
        skip("root %r is not in %s (as root: scripts/make-roots.sh %s)" % (name, roots_dir(), name))
    return p


class RootCopy(object):
    """A private copy of a cached root (the cache is shared and stays untouched), under
    /var/tmp, removed on exit. run() runs a command inside it through scripts/in-root.sh."""

    def __init__(self, name="trixie"):
        self.name = name
        self.src = require_root_fs(name)

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="forksafe-rootcopy.", dir="/var/tmp")
        self.root = os.path.join(self.dir, self.name)
        r = run(["cp", "-a", "--reflink=auto", self.src, self.root], timeout=600)
        if r.returncode != 0:
            fail("copying the root failed: " + r.stderr)
        return self

    def __exit__(self, *exc):
        with open("/proc/mounts") as f:  # in-root.sh's mounts live in its own namespace; be sure
            if any(" %s/" % self.dir in l or " %s " % self.dir in l for l in f):
                print("warning: something is mounted under %s; left in place" % self.dir)
                return
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def popen(self, cmd, env=None, rw=(), ro=(), **kw):
        full = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
        full.update(env or {})
        full["FORKSAFE_ROOTS_DIR"] = self.dir
        args = [IN_ROOT]
        for d in rw:
            args += ["--rw", d]
        for d in ro:
            args += ["--ro", d]
        return subprocess.Popen(args + [self.name, "--"] + list(cmd), env=full, start_new_session=True, **kw)

    def run(self, cmd, timeout, env=None, rw=(), ro=()):
        p = self.popen(cmd, env=env, rw=rw, ro=ro, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            fail("timed out after %ds in the root: %s" % (timeout, " ".join(cmd)))
        return subprocess.CompletedProcess(cmd, p.returncode, out, err)
