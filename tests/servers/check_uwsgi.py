#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# End to end with Debian's uWSGI (uwsgi-core + uwsgi-plugin-python3): master plus 2 workers, the
# app (examples/gunicorn_preload_app.py, a plain WSGI app) loaded in the master, whose import-time
# thread holds a lock. uWSGI forks its workers from C: Python's fork hooks do not run there.
# Without the shim the first request times out; with it every request is answered, and each
# worker's report names the lost Python thread and where it was (the snapshot taken at the fork).
#   check_uwsgi.py --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import (EXAMPLES, base_env, driver_args, fail, free_port, http_get, mark, no_answer, read,
                           read_events, shim_env, skip, start_server, stop_gracefully, stop_kill)

UWSGI = "/usr/bin/uwsgi"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"
APP = os.path.join(os.path.realpath(EXAMPLES), "gunicorn_preload_app.py")
REQUESTS = 20


def start(env, port, logdir):
    cmd = [UWSGI, "--plugin", "python3", "--master", "--processes", "2", "--enable-threads",
           "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", APP, "--callable", "app",
           "--die-on-term", "--harakiri", "0"]
    return start_server(cmd, env, port, os.path.join(logdir, "uwsgi.log"), "uwsgi")


def main():
    a = driver_args("shim")
    if not (os.path.exists(UWSGI) and os.path.exists(PLUGIN)):
        skip("Debian's uwsgi-core and uwsgi-plugin-python3 are not installed")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        no_answer(start(base_env(), port, tmp), port, "uwsgi")

        port = free_port()
        proc = start(shim_env(a.shim, tmp), port, tmp)
        try:
            statuses = [http_get(port, timeout=10)[0] for _ in range(REQUESTS)]
        except Exception as e:
            stop_kill(proc)
            fail("with the shim a request failed: %r" % e, extra=read(os.path.join(tmp, "uwsgi.log")))
        stop_gracefully(proc, "uwsgi")
        if statuses != [200] * REQUESTS:
            fail("answers %r" % statuses)
        print("with the shim: %d/%d requests answered" % (REQUESTS, REQUESTS))
        events = read_events(tmp)
    line = mark(APP, "reporter")
    forks = [e for e in events if e["event"] == "fork"]
    workers = [e for e in forks if any(t.get("python_name") == "stats-reporter" for t in e["lost_threads"])]
    if len(workers) < 2:
        fail("fewer than 2 worker reports name 'stats-reporter'", forks)
    for f in workers:
        t = [t for t in f["lost_threads"] if t.get("python_name") == "stats-reporter"][0]
        if not any(os.path.realpath(fr["file"]) == APP and fr["function"] == "_reporter" and fr["line"] == line
                   for fr in t.get("python_stack", [])):
            fail("worker %d does not show _reporter() at line %d" % (f["child_pid"], line), [t])
    repairs = [e for e in events if e["event"] == "lock_repaired"]
    if not repairs or any(r.get("owner_python_name") != "stats-reporter" for r in repairs):
        fail("repairs must name 'stats-reporter'", repairs)
    print("reports: %d workers name 'stats-reporter' in _reporter() at line %d; %d repairs"
          % (len(workers), line, len(repairs)))


if __name__ == "__main__":
    main()
