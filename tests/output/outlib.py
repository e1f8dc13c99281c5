# SPDX-License-Identifier: MIT
# Helpers shared by the output tests (tests/output/check_*.py): running a program under the shim
# with a hard deadline (the whole process group is killed if it hangs: a hang is a failure, never a
# stuck test), strict JSON parsing of report lines, and reading the text lines back.
import json
import os
import re
import signal
import subprocess
import sys
import time

SKIP = 77
TIMEOUT = 30  # seconds; everything here finishes in well under one when it works


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


class CaseFailed(Exception):
    pass


def _clip(extra):
    if isinstance(extra, bytes):
        extra = extra.decode("utf-8", "backslashreplace")
    # what a program wrote may hold escape sequences: never replay them on a terminal
    extra = re.sub("[\x00-\x08\x0b-\x1f\x7f]", lambda m: "\\x%02x" % ord(m.group()), extra).rstrip()
    if len(extra) > 6000:
        extra = extra[:3000] + "\n[... %d characters ...]\n" % (len(extra) - 6000) + extra[-3000:]
    return extra


def fail(msg, extra=""):
    """Ends the current case (see run_cases) as failed."""
    raise CaseFailed(msg + ("\n" + _clip(extra) if extra else ""))


def run_cases(cases):
    """Runs every case (label, function returning a detail string), each to its end even when an
    earlier one failed, so one run shows everything that is wrong. Exits 1 if any failed."""
    failed = 0
    for label, fn in cases:
        try:
            detail = fn()
        except CaseFailed as e:
            failed += 1
            print("FAIL: %s: %s" % (label, e))
            continue
        print("ok: %s%s" % (label, ": " + detail if detail else ""))
    print("%d of %d cases failed" % (failed, len(cases)) if failed else "all %d cases passed" % len(cases))
    sys.exit(1 if failed else 0)


def base_env():
    """The inherited environment without anything that would change what is under test."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("FORKSAFE_", "PYTHON")) and k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}


def shim_env(shim, **settings):
    env = base_env()
    env["LD_PRELOAD"] = os.path.abspath(shim)
    env.update({k: str(v) for k, v in settings.items()})
    return env


class Result:
    def __init__(self, rc, out, err, seconds, hung):
        self.rc, self.out, self.err, self.seconds, self.hung = rc, out, err, seconds, hung

    def text(self):
        return "exit %r after %.2f s%s\nstdout:\n%s\nstderr:\n%s" % (
            self.rc, self.seconds, " (HUNG: killed)" if self.hung else "",
            self.out.decode("utf-8", "backslashreplace"), self.err.decode("utf-8", "backslashreplace"))


def run(cmd, env, timeout=TIMEOUT, **kw):
    """Runs cmd in its own session; past `timeout` the whole group is killed and hung=True.
    stdout and stderr come back as bytes."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, **kw)
    hung = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate(timeout=30)
    finally:
        try:  # nothing the program started may outlive it
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return Result(p.returncode, out, err, time.monotonic() - t0, hung)


def run_ok(cmd, env, label, timeout=TIMEOUT, **kw):
    """run(), failing the test if the program hung or exited non-zero."""
    r = run(cmd, env, timeout=timeout, **kw)
    if r.hung:
        fail("%s: the program hung (killed after %d s)" % (label, timeout), r.text())
    if r.rc != 0:
        fail("%s: exit status %r" % (label, r.rc), r.text())
    return r


def pids(out, tag):
    """The numbers on stdout lines `TAG <pid>`."""
    return [int(m) for m in re.findall(rb"^%s (\d+)$" % tag.encode(), out, re.M)]


def _reject_constant(name):
    raise ValueError("not JSON: %s" % name)


def strict_json(line):
    """Parses one report line as a strict parser would: the bytes must be UTF-8 (no surrogates,
    no overlong forms), the text one JSON object (no NaN/Infinity, no control characters in
    strings, no duplicate keys). Raises ValueError otherwise."""
    text = line.decode("utf-8", "strict")

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    obj = json.loads(text, strict=True, parse_constant=_reject_constant, object_pairs_hook=no_dups)
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    return obj


def json_lines(data, label):
    """Every line of `data` (bytes) as a strict JSON object; fails on the first bad line, quoting
    it. A last line without its newline is a broken line too."""
    events = []
    if data and not data.endswith(b"\n"):
        fail("%s: the output does not end with a newline (a line was cut)" % label, data[-400:])
    for n, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            events.append(strict_json(line))
        except ValueError as e:
            fail("%s: line %d is not a strict JSON object (%s)" % (label, n, e),
                 repr(line[:300]) + (" ... " + repr(line[-200:]) if len(line) > 500 else ""))
    return events


def lines(data):
    """Text lines (bytes), without their newlines; a final line without one is kept."""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def report_lines(data):
    return [ln for ln in lines(data) if ln.startswith(b"forksafe[")]


def warnings(data):
    """The library's warning lines: `forksafe[PID]: warning: ...`."""
    return [ln for ln in lines(data) if re.match(rb"^forksafe\[\d+\]: warning", ln)]


def line_pid(line):
    m = re.match(rb"^forksafe\[(\d+)\]: ", line)
    return int(m.group(1)) if m else None


def read(path):
    with open(path, "rb") as f:
        return f.read()
