# SPDX-License-Identifier: MIT
# Test helper: the Debian root filesystems made by scripts/make-roots.sh (trixie: CPython 3.13,
# sid: 3.14), for test drivers that run a command inside one. Python 3.6+. Import it with
#
#   sys.path.insert(0, os.path.join(REPO, "tests")); import roots
#
#   roots.require("sid")               # exits 77 (meson's SKIP) if the root has not been made
#   r = roots.run("sid", ["python3", "-c", "pass"], timeout=60, env={"LD_PRELOAD": shim},
#                 rw=[logdir])
#   r.returncode, r.stdout, r.stderr, r.timed_out
#
# Inside, this checkout is at its own path (read-only), so host paths under it work unchanged;
# `rw`/`ro` bind more host directories at their own paths (see scripts/in-root.sh). Roots live
# in $FORKSAFE_ROOTS_DIR (default /var/tmp/forksafe-roots).
import os
import signal
import subprocess
import sys

NAMES = ("trixie", "sid")
SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_ROOT = os.path.join(REPO, "scripts", "in-root.sh")


def roots_dir():
    return os.environ.get("FORKSAFE_ROOTS_DIR") or "/var/tmp/forksafe-roots"


def path(name):
    """The root's directory, or None if it has not been made (completely) or we are not root."""
    p = os.path.join(roots_dir(), name)
    if os.getuid() != 0 or not os.path.isfile(os.path.join(p, ".forksafe-root")):
        return None
    return p


def require(name):
    """Returns the root's directory; prints SKIP and exits 77 if it is absent."""
    p = path(name)
    if p is None:
        print("SKIP: root %r is not in %s (as root: scripts/make-roots.sh %s)" % (name, roots_dir(), name))
        sys.exit(SKIP)
    return p


class Result(object):
    def __init__(self, returncode, stdout, stderr, timed_out):
        self.returncode, self.stdout, self.stderr, self.timed_out = returncode, stdout, stderr, timed_out


def run(name, cmd, timeout, env=None, rw=(), ro=()):
    """Runs `cmd` inside root `name` with the extra environment `env` (only the names in-root.sh
    passes: LD_PRELOAD, FORKSAFE_*, PYTHON*, ...; others are dropped there). After `timeout`
    seconds the whole process group is killed and `timed_out` is True (returncode None)."""
    full_env = dict(os.environ)
    for k in list(full_env):  # nothing of the caller's preload or settings leaks in by accident
        if k == "LD_PRELOAD" or k.startswith("FORKSAFE_") and k != "FORKSAFE_ROOTS_DIR":
            del full_env[k]
    full_env.update(env or {})
    args = [IN_ROOT]
    for d in rw:
        args += ["--rw", d]
    for d in ro:
        args += ["--ro", d]
    p = subprocess.Popen(args + [name, "--"] + list(cmd), env=full_env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return Result(p.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return Result(None, out, err, True)
