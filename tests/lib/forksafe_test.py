# SPDX-License-Identifier: MIT
# The one helper module of the Python test drivers (tests/*/check_*.py, run_case.py). Meson puts
# this folder on PYTHONPATH for every test (tests/meson.build, `test_env`), so a driver just says
#
#   from forksafe_test import base_env, shim_env, run, read_events, fail, ...
#
# Drivers run on any Python 3 (3.6+). The programs under test (held_lock.py, report_scenarios.py,
# py_exit_prog.py, ...) never import this: they run on their own interpreters, 2.7 included, and
# get an environment without PYTHON* (see base_env).
#
# What is here, by section:
#   outcome      driver_args(), SKIP, skip(), fail(), run_cases(): exit 0 pass, 1 fail, 77 skip
#   interpreters resolve() / resolve_or_skip(): `debian`, `pyenv:X.Y` or a path; python_version()
#   environment  base_env(), preload(), shim_env(): what a run gets, with or without the shim
#   running      run(), run_ok(), run_done(): bounded runs; past the deadline the whole process
#                group dies; wait_for(), one_cpu()
#   events       read_events(), strict_json(), json_lines(), lines(), report_lines(), warnings()
#   reports      mark(), has_frame(), check_thread_fields(), check_exit_event()
#   servers      start_server(), no_answer(), http_get(), stop_gracefully(), stop_kill(), free_port()
#   roots        the Debian roots of scripts/make-roots.sh: root_path(), require_root(), run_in_root()
#
# Sanitizer builds (scripts/test-sanitize.sh): $FORKSAFE_TEST_PRELOAD (meson's test environment
# sets it to libasan there) is put before the shim in every LD_PRELOAD built here (preload()), so
# a program that is not itself built with ASan can load the instrumented shim; and run() fails
# the test on a sanitizer report in a program's output (no_sanitizer_report()).
import argparse
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

SKIP = 77
TIMEOUT = 30  # seconds, run()'s default deadline
LIB = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(LIB)
REPO = os.path.dirname(TESTS)
EXAMPLES = os.path.join(REPO, "examples")

sys.dont_write_bytecode = True  # nothing written into the source tree


def _drop_own_pythonpath():
    """Meson prepends this folder to PYTHONPATH for the driver only: take it out again, so that
    whatever the driver passes on (os.environ) is what it would have been without it."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and os.path.abspath(p) != LIB]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        os.environ.pop("PYTHONPATH", None)


_drop_own_pythonpath()


# ---- outcome ----

def driver_args(*required, **options):
    """Parses a driver's command line: each of `required` is a required --NAME (--shim, --bin,
    --interp, ...); each of `options` an optional --NAME, given argparse's keywords as a dict, or
    else its default value. --shim and --bin come back as absolute paths."""
    ap = argparse.ArgumentParser()
    for name in required:
        ap.add_argument("--" + name, required=True)
    for name, spec in options.items():
        ap.add_argument("--" + name.replace("_", "-"), **(spec if isinstance(spec, dict) else {"default": spec}))
    a = ap.parse_args()
    for name in ("shim", "bin"):
        if getattr(a, name, None):
            setattr(a, name, os.path.abspath(getattr(a, name)))
    return a


class CaseFailed(Exception):
    """Raised by fail() inside run_cases(): ends that case only."""


_in_cases = []


def skip(msg):
    print("SKIP: " + msg)
    sys.exit(SKIP)


def _clip(extra):
    if isinstance(extra, bytes):
        extra = extra.decode("utf-8", "backslashreplace")
    # what a program wrote may hold escape sequences: never replay them on a terminal
    extra = re.sub("[\x00-\x08\x0b-\x1f\x7f]", lambda m: "\\x%02x" % ord(m.group()), extra).rstrip()
    if len(extra) > 6000:
        extra = extra[:3000] + "\n[... %d characters ...]\n" % (len(extra) - 6000) + extra[-3000:]
    return extra


def fail(msg, events=(), extra=""):
    """The test fails: prints FAIL, the details (`extra`, program output) and the JSON events that
    show it, and exits 1. Inside run_cases() it ends the current case instead. A string (or bytes)
    in place of the events is taken as the details: fail(msg, r.text())."""
    if isinstance(events, (str, bytes)):
        events, extra = (), events
    text = msg
    if extra:
        text += "\n" + _clip(extra)
    for e in events:
        text += "\n  " + (json.dumps(e) if isinstance(e, dict) else str(e))
    if _in_cases:
        raise CaseFailed(text)
    print("FAIL: " + text)
    sys.exit(1)


def run_cases(cases):
    """Runs every case (label, function returning a detail string), each to its end even when an
    earlier one failed, so one run shows everything that is wrong. Exits 1 if any failed."""
    failed = 0
    for label, fn in cases:
        _in_cases.append(label)
        try:
            detail = fn()
        except CaseFailed as e:
            failed += 1
            print("FAIL: %s: %s" % (label, e))
            continue
        finally:
            _in_cases.pop()
        print("ok: %s%s" % (label, ": " + detail if detail else ""))
    print("%d of %d cases failed" % (failed, len(cases)) if failed else "all %d cases passed" % len(cases))
    sys.exit(1 if failed else 0)


# ---- interpreters ----
# A stable name for each interpreter the tests run on: `debian` is Debian's /usr/bin/python3;
# `pyenv:3.9` the newest pyenv 3.9.x under $(pyenv root)/versions; anything else a path. A name
# that resolves to nothing means the interpreter is absent on this machine: tests then skip.

INTERPRETERS = ["debian"] + ["pyenv:%s" % v for v in
                             ("2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13")]


def pyenv_root():
    root = os.environ.get("PYENV_ROOT")
    if not root:
        try:
            root = subprocess.check_output(["pyenv", "root"], universal_newlines=True,
                                           stderr=subprocess.DEVNULL, timeout=30).strip()
        except (OSError, subprocess.SubprocessError):
            root = os.path.expanduser("~/.pyenv")
    return root


def resolve(name):
    """Path of the interpreter called `name`, or None if it is not on this machine."""
    if name == "debian":
        return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
    if name.startswith("pyenv:"):
        version = name.split(":", 1)[1]
        found = glob.glob(os.path.join(pyenv_root(), "versions", version + ".*", "bin", "python"))
        found.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[-3].split(".")])
        return found[-1] if found else None
    return name if os.path.exists(name) else None


def resolve_or_skip(name):
    """resolve(), or SKIP (exit 77) when the interpreter is absent."""
    path = resolve(name)
    if path is None:
        skip("interpreter %s is not on this machine" % name)
    return path


def python_version(interp):
    """(major, minor, micro) of an interpreter; a failure to tell fails the test."""
    r = run([interp, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], base_env(),
            timeout=60, text=True)
    if r.hung or r.rc != 0:
        fail("cannot get the version of %s" % interp, extra=r.text())
    return tuple(int(x) for x in r.out.strip().split("."))


# ---- environment ----

def base_env(keep=(), **settings):
    """The inherited environment without what would change what is under test: no LD_PRELOAD or
    LD_LIBRARY_PATH, no FORKSAFE_* (a name in `keep` stays), no UWSGI_*, nothing that changes how
    Python starts (PYTHON*); then PYTHONDONTWRITEBYTECODE=1 (the programs under test write nothing
    into the tree) and PYTHONWARNINGS=ignore (3.12+ warns about every fork of a multi-threaded
    process: that is what every test here does), and `settings`."""
    env = {k: v for k, v in os.environ.items()
           if k in keep or not (k.startswith(("FORKSAFE_", "PYTHON", "UWSGI"))
                                or k in ("LD_PRELOAD", "LD_LIBRARY_PATH"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", PYTHONWARNINGS="ignore")
    env.update({k: str(v) for k, v in settings.items()})
    return env


def preload(shim):
    """The LD_PRELOAD value that loads `shim`: $FORKSAFE_TEST_PRELOAD (libasan in a sanitizer
    build) first, when set."""
    first = os.environ.get("FORKSAFE_TEST_PRELOAD", "")
    return ":".join([p for p in first.split(":") if p] + [os.path.abspath(shim)])


def shim_env(shim, logdir=None, base=None, **settings):
    """base_env() (or `base`) with the shim preloaded. With `logdir`: JSON reports, one file per
    process (log-PID.jsonl, read back by read_events). Then `settings` (FORKSAFE_*=...)."""
    env = dict(base_env() if base is None else base)
    env["LD_PRELOAD"] = preload(shim)
    if logdir is not None:
        env.update(FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(logdir, "log-%p.jsonl"))
    env.update({k: str(v) for k, v in settings.items()})
    return env


def env_shown(env):
    """The settings of a run as a command-line prefix, for logs: LD_PRELOAD and FORKSAFE_*."""
    return " ".join("%s=%s" % (k, env[k]) for k in sorted(env) if k == "LD_PRELOAD" or k.startswith("FORKSAFE_"))


# ---- running ----

class Result(object):
    """What run() returns; `rc, out, err = run(...)` unpacks it too."""
    def __init__(self, rc, out, err, seconds, hung):
        self.rc, self.out, self.err, self.seconds, self.hung = rc, out, err, seconds, hung

    def __iter__(self):
        return iter((self.rc, self.out, self.err))

    def text(self):
        def s(x):
            return x.decode("utf-8", "backslashreplace") if isinstance(x, bytes) else x or ""
        return "exit %r after %.2f s%s\nstdout:\n%s\nstderr:\n%s" % (
            self.rc, self.seconds, " (HUNG: killed)" if self.hung else "", s(self.out), s(self.err))


def kill_group(proc):
    """SIGKILL to the process group of `proc` (started with start_new_session): it and whatever it
    started. Nothing it started may outlive the test."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd, env, timeout=TIMEOUT, text=False, input=None, stderr=subprocess.PIPE, **kw):
    """Runs cmd in its own session, stdin from /dev/null (or `input`). Past `timeout` seconds the
    whole process group is killed and hung=True (rc is then the kill's). stdout and stderr come
    back as bytes, or str with text=True (stderr=subprocess.STDOUT: merged into stdout). Never
    raises on a timeout: the caller decides."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
                         universal_newlines=text, **kw)
    hung = False
    try:
        out, err = p.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        kill_group(p)
        out, err = p.communicate(timeout=30)
    finally:
        kill_group(p)
    r = Result(p.returncode, out, err, time.monotonic() - t0, hung)
    no_sanitizer_report(cmd, r)
    return r


_SANITIZER_REPORT = re.compile(r"runtime error: |ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                               r"UndefinedBehaviorSanitizer|AddressSanitizer:DEADLYSIGNAL")


def no_sanitizer_report(cmd, r):
    """In a sanitizer build, a report on a program's output fails the test whatever else the test
    expects. ASan writes its reports to files (ASAN_OPTIONS log_path, scripts/test-sanitize.sh);
    UBSan, linked beside ASan, ignores log_path and writes to stderr: this is where it is caught."""
    if not os.environ.get("FORKSAFE_TEST_PRELOAD"):
        return
    for data in (r.err, r.out):
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if data and _SANITIZER_REPORT.search(data):
            fail("a sanitizer report from %s" % " ".join(str(c) for c in cmd), extra=r.text())


def run_ok(cmd, env, label=None, timeout=TIMEOUT, **kw):
    """run(), failing the test if the program hung or exited non-zero."""
    r = run(cmd, env, timeout=timeout, **kw)
    label = label or " ".join(str(c) for c in cmd)
    if r.hung:
        fail("%s: the program hung (killed after %d s)" % (label, timeout), extra=r.text())
    if r.rc != 0:
        fail("%s: exit status %r" % (label, r.rc), extra=r.text())
    return r


def run_done(cmd, env, label=None, timeout=TIMEOUT, **kw):
    """run(), failing the test only if the program did not finish in time."""
    r = run(cmd, env, timeout=timeout, **kw)
    if r.hung:
        fail("%s did not finish within %d s" % (label or " ".join(str(c) for c in cmd), timeout),
             extra=r.text())
    return r


def one_cpu():
    """A preexec_fn that pins the child to one CPU (the first it may use)."""
    cpu = min(os.sched_getaffinity(0))
    return lambda: os.sched_setaffinity(0, {cpu})


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


# ---- events ----

def read_events(logdir):
    """Every JSON event in the log files of shim_env(logdir=...), in file order; a line that is not
    JSON, or an object without event, time and pid, fails the test."""
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


def of(events, kind):
    return [e for e in events if e.get("event") == kind]


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
        fail("%s: the output does not end with a newline (a line was cut)" % label, extra=data[-400:])
    for n, line in enumerate(data.split(b"\n")[:-1], 1):
        try:
            events.append(strict_json(line))
        except ValueError as e:
            fail("%s: line %d is not a strict JSON object (%s)" % (label, n, e),
                 extra=repr(line[:300]) + (" ... " + repr(line[-200:]) if len(line) > 500 else ""))
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


def pids(out, tag):
    """The numbers on stdout lines `TAG <pid>` (bytes output)."""
    return [int(m) for m in re.findall(rb"^%s (\d+)$" % tag.encode(), out, re.M)]


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- reports ----

def mark(path, name):
    """Line number of the `# MARK:name` (or `// MARK:name`) comment in `path`."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if re.search(r"MARK:%s\b" % re.escape(name), line):
                return n
    raise SystemExit("no MARK:%s in %s" % (name, path))


def frame(path, function, line):
    return {"file": path, "function": function, "line": line}


def has_frame(thread, path, function, line):
    """The thread's python_stack holds that frame (paths compared after resolving links)."""
    path = os.path.realpath(path)
    return any(os.path.realpath(fr.get("file", "")) == path and fr.get("function") == function
               and fr.get("line") == line for fr in thread.get("python_stack", []))


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


# ---- servers ----

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_listening(proc, port, seconds=30):
    """True once something accepts connections on the port; False if `proc` ended first or after
    `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if listening(port):
            return True
        time.sleep(0.05)  # polling a condition with a deadline, not deciding an outcome
    return False


def start_server(cmd, env, port, log, what, seconds=30):
    """Starts a server in its own session, its output to the file `log`, and waits until it
    listens on the port. If it ends first or does not listen within `seconds`, its group is
    killed and the test fails, showing the log."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    if not wait_listening(proc, port, seconds):
        code = proc.poll()
        stop_kill(proc)
        fail("%s did not start (%s)" % (what, "exit %d" % code if code is not None else
                                        "not listening after %d s" % seconds), extra=read(log))
    return proc


def stop_kill(proc):
    """Kills the server and everything in its group (master and possibly hung workers), reaps it."""
    kill_group(proc)
    proc.wait(timeout=30)


def stop_gracefully(proc, what, log=None):
    """SIGTERM: the server stops its workers, which exit normally (and write their reports). Fails
    the test (after killing the group) if it does not stop within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop_kill(proc)
        fail("%s did not stop on SIGTERM" % what,
             extra=read(log) if log and os.path.exists(log) else (log or ""))


def no_answer(proc, port, what, timeout=3):
    """Without the shim: a request to the server must time out (its worker hangs), or the
    reproduction is not real. The server's group is killed either way."""
    try:
        http_get(port, timeout=timeout)
        fail("without the shim %s answered a request: the reproduction is not real" % what)
    except OSError as e:  # socket.timeout is an OSError
        print("without the shim: request timed out as expected (%s)" % e)
    finally:
        stop_kill(proc)


def http_get(port, timeout):
    """GET / on the port: (status, body as text)."""
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
        return r.status, r.read().decode()


# ---- roots ----
# The Debian root filesystems made by scripts/make-roots.sh (trixie: CPython 3.13, sid: 3.14), in
# $FORKSAFE_ROOTS_DIR (default /var/tmp/forksafe-roots). Inside one, this checkout is at its own
# path (read-only), so host paths under it work unchanged; `rw`/`ro` bind more host directories at
# their own paths (scripts/in-root.sh).

ROOT_NAMES = ("trixie", "sid")
IN_ROOT = os.path.join(REPO, "scripts", "in-root.sh")


def roots_dir():
    return os.environ.get("FORKSAFE_ROOTS_DIR") or "/var/tmp/forksafe-roots"


def root_path(name):
    """The root's directory, or None if it has not been made (completely) or we are not root."""
    p = os.path.join(roots_dir(), name)
    if os.getuid() != 0 or not os.path.isfile(os.path.join(p, ".forksafe-root")):
        return None
    return p


def require_root(name):
    """Returns the root's directory; SKIP (exit 77) if it is absent."""
    p = root_path(name)
    if p is None:
        skip("root %r is not in %s (as root: scripts/make-roots.sh %s)" % (name, roots_dir(), name))
    return p


def run_in_root(name, cmd, timeout, env=None, rw=(), ro=()):
    """Runs `cmd` inside root `name` with base_env() (FORKSAFE_ROOTS_DIR kept: in-root.sh reads it)
    plus `env`; in-root.sh passes on only LD_PRELOAD, FORKSAFE_*, PYTHON*, TERM, TZ, LC_*. Returns a
    Result with text output; past `timeout` the whole process group is killed (hung=True)."""
    full_env = base_env(keep=("FORKSAFE_ROOTS_DIR",))
    full_env.update(env or {})
    args = [IN_ROOT]
    for d in rw:
        args += ["--rw", d]
    for d in ro:
        args += ["--ro", d]
    return run(args + [name, "--"] + list(cmd), full_env, timeout=timeout, text=True)
