#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# End to end with Debian's gunicorn: `gunicorn --preload -w 2` serving
# examples/gunicorn_preload_app.py, whose import-time
# thread holds a lock at fork. Without the shim the first request times out (the worker hangs);
# with it every request is answered and each worker's report names the repair.
#   check_gunicorn.py --shim build/lib/libforksafe.so
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

GUNICORN = "/usr/bin/gunicorn"
EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
REQUESTS = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc, port, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)  # polling a condition with a deadline, not deciding an outcome
    return False


def start(env, port, logdir):
    cmd = [GUNICORN, "--preload", "-w", "2", "-k", "sync", "--timeout", "120",
           "-b", "127.0.0.1:%d" % port, "--chdir", EXAMPLES, "gunicorn_preload_app:app"]
    err = open(os.path.join(logdir, "gunicorn.err"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err, start_new_session=True)
    if not wait_listening(proc, port):
        stop(proc)
        sys.exit("FAIL: gunicorn did not start:\n" + open(err.name).read())
    return proc


def stop_gracefully(proc):
    """SIGTERM: gunicorn stops its workers, which exit normally (and write their reports)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        stop(proc)
        sys.exit("FAIL: gunicorn did not stop on SIGTERM")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # master and (possibly hung) workers
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def get(port, timeout):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
        return r.status, r.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    if not os.path.exists(GUNICORN):
        print("SKIP: Debian's gunicorn is not installed (scripts/install-deps.sh installs it)")
        sys.exit(77)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("FORKSAFE_", "LD_PRELOAD", "PYTHON"))}
    with tempfile.TemporaryDirectory() as tmp:
        # Without the shim: the reproduction is real.
        port = free_port()
        proc = start(base, port, tmp)
        try:
            get(port, timeout=3)
            sys.exit("FAIL: without the shim a request was answered: the reproduction is not real")
        except (socket.timeout, OSError) as e:
            print("without the shim: request timed out as expected (%s)" % e)
        finally:
            stop(proc)

        # With the shim: every request answered.
        port = free_port()
        env = dict(base, LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_FORMAT="json",
                   FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"))
        proc = start(env, port, tmp)
        try:
            answers = [get(port, timeout=10) for _ in range(REQUESTS)]
        except Exception as e:
            stop(proc)
            sys.exit("FAIL: with the shim a request failed: %r\n%s" % (e, open(os.path.join(tmp, "gunicorn.err")).read()))
        stop_gracefully(proc)
        if any(status != 200 for status, _ in answers):
            sys.exit("FAIL: not every answer was 200: %r" % answers)
        print("with the shim: %d/%d requests answered" % (len(answers), REQUESTS))

        events = []
        for path in glob.glob(os.path.join(tmp, "log-*.jsonl")):
            events += [json.loads(l) for l in open(path)]
        forks = [e for e in events if e["event"] == "fork" and e["parent_pid"] == proc.pid]
        repairs = [e for e in events if e["event"] == "lock_repaired"]
        if len(forks) < 2 or not all(e["lost_threads"] for e in forks):
            sys.exit("FAIL: no fork report from gunicorn's workers: %r" % events)
        if not repairs or {r["pid"] for r in repairs} - {f["child_pid"] for f in forks}:
            sys.exit("FAIL: the workers' repairs are not reported: %r" % events)
        # Python-aware: each worker names the lost thread by its Python name and shows where it was.
        app = os.path.realpath(os.path.join(EXAMPLES, "gunicorn_preload_app.py"))
        line = [n for n, l in enumerate(open(app), 1) if "# MARK:reporter" in l][0]
        for f in forks:
            t = [t for t in f["lost_threads"] if t.get("python_name") == "stats-reporter"]
            frames = t[0].get("python_stack", []) if t else []
            if not any(os.path.realpath(fr["file"]) == app and fr["function"] == "_reporter"
                       and fr["line"] == line for fr in frames):
                sys.exit("FAIL: worker %d does not show 'stats-reporter' in _reporter() at line %d: %r"
                         % (f["child_pid"], line, f))
        if any(r.get("owner_python_name") != "stats-reporter" for r in repairs):
            sys.exit("FAIL: repairs do not name the owner 'stats-reporter': %r" % repairs)
        print("reports: %d worker forks, %d repairs, all naming 'stats-reporter'" % (len(forks), len(repairs)))


if __name__ == "__main__":
    main()
