#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# `forksafe gunicorn --preload app:app` with Debian's gunicorn, the way a user runs it: the app
# (examples/docker/app.py) has a thread holding an RLock when the master forks its workers.
# Every request is answered, each worker's report (one JSON file per pid) says which thread it
# lost and that the lock was repaired, and `forksafe summary` turns the directory into a table.
# Without forksafe the same server's first request times out (the hang is real).
#   check_gunicorn.py --forksafe FORKSAFE --shim LIB
import argparse
import json
import os
import shutil
import tempfile

from deploylib import APP_DIR, fail, free_port, run, serve_and_query, skip

GUNICORN = "/usr/bin/gunicorn"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forksafe", required=True)
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    if not os.access(GUNICORN, os.X_OK):
        skip("Debian's gunicorn is not installed (scripts/install-deps.sh installs it)")
    fs, shim = os.path.abspath(a.forksafe), os.path.abspath(a.shim)
    base = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
    tmp = tempfile.mkdtemp(prefix="forksafe-gunicorn.")
    try:
        def server(port, wrap):
            return wrap + [GUNICORN, "--preload", "-w", "2", "-k", "sync", "--timeout", "60", "--graceful-timeout", "5",
                           "-b", "127.0.0.1:%d" % port, "--chdir", APP_DIR, "app:app"]

        # without the shim: the first request times out
        port = free_port()
        answers = serve_and_query(server(port, []), port, base, os.path.join(tmp, "plain.log"), requests=1)
        if answers[0][0] == 200:
            fail("without forksafe the worker answered: the app does not reproduce the hang here")
        print("without forksafe: the first request fails (%s)" % answers[0][1][:80])

        logs = os.path.join(tmp, "logs")
        os.mkdir(logs)
        port = free_port()
        answers = serve_and_query(server(port, [fs, "--json", "--log=" + logs + "/forksafe-%p.log"]), port,
                                  dict(base, FORKSAFE_LIBRARY=shim), os.path.join(tmp, "shim.log"), requests=10)
        bad = [x for x in answers if x[0] != 200]
        if bad:
            fail("with forksafe, %d of 10 requests failed: %s\n%s" % (len(bad), bad[:3], open(os.path.join(tmp, "shim.log")).read()))
        print("with forksafe: 10 of 10 requests answered")
        events = []
        for f in sorted(os.listdir(logs)):
            for line in open(os.path.join(logs, f)):
                events.append(json.loads(line))
        forks = [e for e in events if e["event"] == "fork"]
        repaired = [e for e in events if e["event"] == "lock_repaired"]
        if len(forks) < 2 or not all(any(t.get("python_name") == "metrics-flusher" for t in e["lost_threads"]) for e in forks):
            fail("each worker should report the lost thread 'metrics-flusher': %s" % forks)
        workers = {e["child_pid"] for e in forks}
        served = {int(b.split("from worker ")[1]) for _, b in answers}
        fixed = {e["pid"] for e in repaired}
        if not served <= fixed or not fixed <= workers or \
                not all(e["owner_python_name"] == "metrics-flusher" for e in repaired):
            fail("every worker that answered should report the repaired lock of 'metrics-flusher' (workers %s, "
                 "served by %s): %s" % (sorted(workers), sorted(served), repaired))
        print("each of %d workers reported the lost thread; the %d that answered, the repair" % (len(workers), len(served)))
        r = run([fs, "summary", logs], 60)
        print(r.stdout)
        if r.returncode != 0 or "metrics-flusher" not in r.stdout or "repaired" not in r.stdout or "spawn_worker" not in r.stdout:
            fail("the summary should show the workers' forks (site spawn_worker), lost thread and repairs")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
