#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# End to end with Debian's uWSGI (uwsgi-core + uwsgi-plugin-python3): master plus 2 workers, the
# app (examples/gunicorn_preload_app.py, a plain WSGI app) loaded in the master, whose import-time
# thread holds a lock. uWSGI forks its workers from C: Python's fork hooks do not run there.
# Without the shim the first request times out; with it every request is answered, and each
# worker's report names the lost Python thread and where it was (the snapshot taken at the fork).
#   check_uwsgi.py --shim build/lib/libforksafe.so
import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

UWSGI = "/usr/bin/uwsgi"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"
EXAMPLES = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
APP = os.path.join(EXAMPLES, "gunicorn_preload_app.py")
REQUESTS = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env, port, logdir):
    cmd = [UWSGI, "--plugin", "python3", "--master", "--processes", "2", "--enable-threads",
           "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", APP, "--callable", "app",
           "--die-on-term", "--harakiri", "0"]
    err = open(os.path.join(logdir, "uwsgi.log"), "w")
    proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)  # polling a condition with a deadline
    kill(proc)
    sys.exit("FAIL: uwsgi did not start:\n" + open(err.name).read())


def kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def stop_gracefully(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill(proc)
        sys.exit("FAIL: uwsgi did not stop on SIGTERM")


def get(port, timeout):
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=timeout) as r:
        return r.status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    if not (os.path.exists(UWSGI) and os.path.exists(PLUGIN)):
        print("SKIP: Debian's uwsgi-core and uwsgi-plugin-python3 are not installed")
        sys.exit(77)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("FORKSAFE_", "LD_PRELOAD", "PYTHON", "UWSGI"))}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start(base, port, tmp)
        try:
            get(port, timeout=3)
            sys.exit("FAIL: without the shim a request was answered: the reproduction is not real")
        except OSError as e:
            print("without the shim: request timed out as expected (%s)" % e)
        finally:
            kill(proc)

        port = free_port()
        env = dict(base, LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_FORMAT="json",
                   FORKSAFE_LOG=os.path.join(tmp, "log-%p.jsonl"))
        proc = start(env, port, tmp)
        try:
            statuses = [get(port, timeout=10) for _ in range(REQUESTS)]
        except Exception as e:
            kill(proc)
            sys.exit("FAIL: with the shim a request failed: %r\n%s" % (e, open(os.path.join(tmp, "uwsgi.log")).read()))
        stop_gracefully(proc)
        if statuses != [200] * REQUESTS:
            sys.exit("FAIL: answers %r" % statuses)
        print("with the shim: %d/%d requests answered" % (REQUESTS, REQUESTS))
        events = []
        for path in glob.glob(os.path.join(tmp, "log-*.jsonl")):
            events += [json.loads(l) for l in open(path)]
    line = [n for n, l in enumerate(open(APP), 1) if "# MARK:reporter" in l][0]
    forks = [e for e in events if e["event"] == "fork"]
    workers = [e for e in forks if any(t.get("python_name") == "stats-reporter" for t in e["lost_threads"])]
    if len(workers) < 2:
        sys.exit("FAIL: fewer than 2 worker reports name 'stats-reporter': %r" % forks)
    for f in workers:
        t = [t for t in f["lost_threads"] if t.get("python_name") == "stats-reporter"][0]
        if not any(os.path.realpath(fr["file"]) == APP and fr["function"] == "_reporter" and fr["line"] == line
                   for fr in t.get("python_stack", [])):
            sys.exit("FAIL: worker %d does not show _reporter() at line %d: %r" % (f["child_pid"], line, t))
    repairs = [e for e in events if e["event"] == "lock_repaired"]
    if not repairs or any(r.get("owner_python_name") != "stats-reporter" for r in repairs):
        sys.exit("FAIL: repairs must name 'stats-reporter': %r" % repairs)
    print("reports: %d workers name 'stats-reporter' in _reporter() at line %d; %d repairs"
          % (len(workers), line, len(repairs)))


if __name__ == "__main__":
    main()
