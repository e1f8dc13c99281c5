#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# End to end with Debian's gunicorn: `gunicorn --preload -w 2` serving
# examples/gunicorn_preload_app.py, whose import-time
# thread holds a lock at fork. Without the shim the first request times out (the worker hangs);
# with it every request is answered and each worker's report names the repair.
#   check_gunicorn.py --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import (EXAMPLES, base_env, driver_args, fail, free_port, http_get, mark, no_answer, read,
                           read_events, shim_env, skip, start_server, stop_gracefully, stop_kill)

GUNICORN = "/usr/bin/gunicorn"
REQUESTS = 20


def start(env, port, logdir):
    cmd = [GUNICORN, "--preload", "-w", "2", "-k", "sync", "--timeout", "120",
           "-b", "127.0.0.1:%d" % port, "--chdir", EXAMPLES, "gunicorn_preload_app:app"]
    return start_server(cmd, env, port, os.path.join(logdir, "gunicorn.err"), "gunicorn")


def main():
    a = driver_args("shim")
    if not os.path.exists(GUNICORN):
        skip("Debian's gunicorn is not installed (scripts/install-deps.sh installs it)")
    with tempfile.TemporaryDirectory() as tmp:
        # Without the shim: the reproduction is real.
        port = free_port()
        no_answer(start(base_env(), port, tmp), port, "gunicorn")

        # With the shim: every request answered.
        port = free_port()
        proc = start(shim_env(a.shim, tmp), port, tmp)
        try:
            answers = [http_get(port, timeout=10) for _ in range(REQUESTS)]
        except Exception as e:
            stop_kill(proc)
            fail("with the shim a request failed: %r" % e, extra=read(os.path.join(tmp, "gunicorn.err")))
        stop_gracefully(proc, "gunicorn")
        if any(status != 200 for status, _ in answers):
            fail("not every answer was 200: %r" % answers)
        print("with the shim: %d/%d requests answered" % (len(answers), REQUESTS))
        events = read_events(tmp)

    forks = [e for e in events if e["event"] == "fork" and e["parent_pid"] == proc.pid]
    repairs = [e for e in events if e["event"] == "lock_repaired"]
    if len(forks) < 2 or not all(e["lost_threads"] for e in forks):
        fail("no fork report from gunicorn's workers", events)
    if not repairs or {r["pid"] for r in repairs} - {f["child_pid"] for f in forks}:
        fail("the workers' repairs are not reported", events)
    # Python-aware: each worker names the lost thread by its Python name and shows where it was.
    app = os.path.realpath(os.path.join(EXAMPLES, "gunicorn_preload_app.py"))
    line = mark(app, "reporter")
    for f in forks:
        t = [t for t in f["lost_threads"] if t.get("python_name") == "stats-reporter"]
        frames = t[0].get("python_stack", []) if t else []
        if not any(os.path.realpath(fr["file"]) == app and fr["function"] == "_reporter"
                   and fr["line"] == line for fr in frames):
            fail("worker %d does not show 'stats-reporter' in _reporter() at line %d" % (f["child_pid"], line), [f])
    if any(r.get("owner_python_name") != "stats-reporter" for r in repairs):
        fail("repairs do not name the owner 'stats-reporter'", repairs)
    print("reports: %d worker forks, %d repairs, all naming 'stats-reporter'" % (len(forks), len(repairs)))


if __name__ == "__main__":
    main()
