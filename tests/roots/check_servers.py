#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Debian's gunicorn (--preload) and uWSGI (master + workers, forked from C) inside a Debian root,
# serving server_app.py, whose import-time thread holds a lock when the workers are forked:
#   --lock rlock: without the shim the first request times out; with it every request is
#                 answered, each worker's report names the lost 'stats-reporter', and the lock is
#                 repaired (3.13: a semaphore; 3.14: a PyMutex RLock, also in uWSGI's workers);
#   --lock lock:  a PyMutex Lock (3.13.1+, no owner) held in the thread's `with` block: the same,
#                 repaired as python_lock, naming where the thread took it;
#   --lock lock-bare: the Lock taken by a bare acquire(): nothing proves who holds it, so it is
#                 not repaired, but a worker about to wait for it forever says so (lock_orphaned,
#                 python_lock, owner_unknown, with the worker's Python stack: app in server_app.py).
#   check_servers.py --shim LIB --root trixie|sid --server gunicorn|uwsgi --lock rlock|lock|lock-bare
import os
import subprocess
import tempfile

from forksafe_test import (IN_ROOT, base_env, driver_args, fail, free_port, http_get, of, read, read_events,
                           require_root, stop_gracefully, stop_kill, wait_listening)

HERE = os.path.dirname(os.path.abspath(__file__))
REQUESTS = 10


def command(server, port):
    if server == "gunicorn":
        return ["python3", "-m", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:%d" % port,
                "--chdir", HERE, "server_app:app"]
    return ["uwsgi", "--plugin", "python3", "--master", "--processes", "2", "--enable-threads",
            "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", os.path.join(HERE, "server_app.py"),
            "--callable", "app", "--die-on-term", "--harakiri", "0"]


def start(root, server, lock, port, logdir, shim):
    env = base_env(keep=("FORKSAFE_ROOTS_DIR",), SERVER_APP_LOCK=lock)
    if shim:
        env.update(LD_PRELOAD=shim, FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(logdir, "log-%p.jsonl"))
    log = os.path.join(logdir, "server.log")
    with open(log, "w") as out:
        proc = subprocess.Popen([IN_ROOT, "--rw", logdir, root, "--", "env", "SERVER_APP_LOCK=" + lock]
                                + command(server, port), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=out, start_new_session=True)
    if not wait_listening(proc, port, 60):
        stop_kill(proc)
        fail("%s did not start in %s" % (server, root), extra=read(log))
    return proc, log


def answers(port, timeout):
    try:
        return http_get(port, timeout=timeout)[0]
    except OSError:
        return None


def main():
    a = driver_args("shim", "root", "server", "lock")
    require_root(a.root)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        port = free_port()
        proc, log = start(a.root, a.server, a.lock, port, tmp, None)
        status = answers(port, 3)
        stop_kill(proc)
        if status is not None:
            fail("without the shim %s answered: the reproduction is not real" % a.server, extra=read(log))
        port = free_port()
        proc, log = start(a.root, a.server, a.lock, port, tmp, os.path.abspath(a.shim))
        repairable = a.lock != "lock-bare"
        statuses = [answers(port, 10 if repairable else 3) for _ in range(REQUESTS if repairable else 1)]
        stop_gracefully(proc, a.server, log) if repairable else stop_kill(proc)
        evs = read_events(tmp)
        server_log = read(log)
    forks = [f for f in of(evs, "fork") if any(t.get("python_name") == "stats-reporter" for t in f["lost_threads"])]
    # gunicorn's workers (os.fork) report at once; uWSGI's (forked from C) when they first block,
    # so with one request (--lock lock) only the worker that took it has written its report.
    want = 1 if a.server == "uwsgi" and not repairable else 2
    if len(forks) < want:
        fail("fewer than %d worker reports name 'stats-reporter'" % want, evs, extra=server_log)
    if repairable:
        if statuses != [200] * REQUESTS:
            fail("with the shim: answers %r" % statuses, evs, extra=server_log)
        rep = of(evs, "lock_repaired")
        types = ("semaphore", "python_rlock") if a.lock == "rlock" else ("python_lock",)
        if not rep or any(r.get("owner_python_name") != "stats-reporter" or r["type"] not in types for r in rep):
            fail("repairs of the %s naming 'stats-reporter'" % " or ".join(types), evs)
        if a.lock == "lock" and any(r.get("taken_function") != "_reporter" or
                                    not r.get("taken_file", "").endswith("server_app.py") for r in rep):
            fail("each Lock repair names where the lost thread took it (_reporter in server_app.py)", evs)
        print("ok: %s in %s: %d/%d answered, %d workers name the lost thread, %d repairs (%s)"
              % (a.server, a.root, REQUESTS, REQUESTS, len(forks), len(rep), rep[0]["type"]))
    else:
        orphaned = [e for e in of(evs, "lock_orphaned") if e["type"] == "python_lock"]
        if not orphaned or any(e.get("reason") != "owner_unknown" for e in orphaned):
            fail("a worker waiting for the Lock for good reports it (python_lock, owner_unknown)", evs)
        if any(not any(f.get("function") == "app" and f.get("file", "").endswith("server_app.py")
                       for f in e.get("waiter_python_stack", [])) for e in orphaned):
            fail("the report gives the waiting worker's Python stack (app in server_app.py)", evs)
        print("ok: %s in %s: the Lock taken by a bare acquire() is not repaired, and %d worker(s) explain the hang"
              % (a.server, a.root, len(orphaned)))


if __name__ == "__main__":
    main()
