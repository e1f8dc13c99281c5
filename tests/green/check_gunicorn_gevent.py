#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The issue end to end: `gunicorn -k gevent --preload -w 2` serving gevent_app.py, whose
# import-time "Redis listener" thread is a greenlet under monkey.patch_all().
#   --mode report     without the shim both workers run a copy of the listener (the bug, checked);
#                     with it, each worker's fork report lists the carried listener (name, stack,
#                     the app's line that started it), and the copies still run
#   --mode kill       FORKSAFE_GREEN=kill: each worker's report says it is stopped, the copy is
#                     dead in each worker and beat there at most once (a wake-up already due at
#                     the fork); the master's listener goes on
#                     (not checked with --no-master-progress)
#   --mode nothread   patch_all(thread=False): the listener is an OS thread, lost at the fork;
#                     each worker's report names it
# Every wait is bounded and waits for something to happen (a port, an answer, a heartbeat).
#   check_gunicorn_gevent.py --shim build/lib/libforksafe.so --mode report [--root trixie]
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

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "gevent_app.py")
GUNICORN = "/usr/bin/gunicorn"
SKIP = 77
MASTER_PROGRESS = True


def fail(msg, extra=""):
    print("FAIL: " + msg)
    if extra:
        print(extra.rstrip()[-8000:])
    sys.exit(1)


def mark(name):
    with open(APP) as f:
        for n, line in enumerate(f, 1):
            if "# MARK:" + name in line:
                return n
    raise SystemExit("no MARK:" + name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, seconds, what, proc=None, log=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            fail("gunicorn ended early while waiting for " + what, open(log).read() if log else "")
        r = cond()
        if r:
            return r
        time.sleep(0.05)  # polls a condition under a deadline; decides nothing by itself
    fail("timed out waiting for " + what, open(log).read() if log else "")


def heartbeats(hb):
    try:
        with open(hb) as f:
            return [int(l.split()[1]) for l in f.read().split("\n") if l.startswith("hb ")]
    except FileNotFoundError:
        return []


def ask(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
            pid, state = r.read().decode().split()
            return int(pid), state
    except (OSError, ValueError):
        return None


def serve(tmp, mode, shim):
    """Runs gunicorn; returns (master pid, {worker pid: listener state}, heartbeats, reports)."""
    port = free_port()
    hb = os.path.join(tmp, "hb")
    logs = os.path.join(tmp, "logs")
    os.makedirs(logs, exist_ok=True)
    errlog = os.path.join(tmp, "gunicorn.err")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD"))}
    env.update(GREEN_APP_HB=hb, GREEN_APP_THREADS="0" if mode == "nothread" else "1")
    if shim:
        env.update(LD_PRELOAD=shim, FORKSAFE_FORMAT="json", FORKSAFE_LOG=os.path.join(logs, "fs-%p.log"))
        if mode == "kill":
            env["FORKSAFE_GREEN"] = "kill"
    cmd = [GUNICORN, "-k", "gevent", "--preload", "-w", "2", "--timeout", "120", "-b", "127.0.0.1:%d" % port,
           "--chdir", HERE, "gevent_app:app"]
    with open(errlog, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err, start_new_session=True)
    try:
        states = {}

        def both_workers():
            r = ask(port)
            if r:
                states.setdefault(r[0], set()).add(r[1])
            return len(states) >= 2

        wait_until(both_workers, 90, "answers from both workers", proc, errlog)
        if mode == "report":  # each worker's copy of the listener runs: its pid in the heartbeats
            wait_until(lambda: all(p in heartbeats(hb) for p in states), 30, "heartbeats from both workers",
                       proc, errlog)
        if proc.pid not in heartbeats(hb):
            fail("the listener never ran in the master", open(errlog).read())
        if mode != "nothread" and MASTER_PROGRESS:  # the master's listener goes on: 3 more heartbeats
            base = heartbeats(hb).count(proc.pid)
            wait_until(lambda: heartbeats(hb).count(proc.pid) >= base + 3, 30, "the master's heartbeats",
                       proc, errlog)
        beats = heartbeats(hb)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    reports = []
    for path in glob.glob(os.path.join(logs, "fs-*.log")):
        with open(path) as f:
            reports += [json.loads(l) for l in f if l.startswith("{")]
    return proc.pid, states, beats, reports, open(errlog).read()


def in_root(name, cmd):
    """Runs this driver again inside Debian root `name` (the shared helper, tests/lib), with the
    root's own Python and packages; returns its exit status (77: the root is absent)."""
    sys.path.insert(0, os.path.join(HERE, "..", "lib"))
    import forksafe_test
    forksafe_test.require_root(name)
    r = forksafe_test.run_in_root(name, cmd, timeout=600)
    sys.stdout.write((r.out or "") + (r.err or ""))
    return 1 if r.hung else r.rc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim", required=True)
    ap.add_argument("--mode", choices=["report", "kill", "nothread"], required=True)
    ap.add_argument("--root")
    ap.add_argument("--no-master-progress", action="store_true",
                    help="do not wait for the master's listener to go on (gunicorn 26's master waits "
                         "for signals on a queue outside gevent's hub: its greenlets stand still)")
    a = ap.parse_args()
    global MASTER_PROGRESS
    MASTER_PROGRESS = not a.no_master_progress
    shim = os.path.abspath(a.shim)
    if a.root:
        sys.exit(in_root(a.root, ["python3", os.path.abspath(__file__), "--shim", shim, "--mode", a.mode] +
                         (["--no-master-progress"] if a.no_master_progress else [])))
    if not os.path.exists(GUNICORN) or subprocess.run(["/usr/bin/python3", "-c", "import gevent"],
                                                      stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: needs %s and python3-gevent" % GUNICORN)
        sys.exit(SKIP)
    with tempfile.TemporaryDirectory() as tmp:
        if a.mode == "report":  # without the shim: the bug
            os.makedirs(os.path.join(tmp, "plain"))
            master, states, beats, _, err = serve(os.path.join(tmp, "plain"), "report", None)
            if any(s != {"alive"} for s in states.values()):
                fail("without the shim, expected the listener's copy alive in both workers: %s" % states, err)
        master, states, beats, reports, err = serve(tmp, a.mode, shim)
        workers = sorted(states)
        forks = {e["child_pid"]: e for e in reports if e["event"] == "fork"}
        for w in workers:
            ev = forks.get(w)
            if ev is None:
                fail("no fork report from worker %d" % w, err + "\n".join(json.dumps(e) for e in reports))
            if ev["parent_pid"] != master:
                fail("worker %d's report names parent %d, not the master %d" % (w, ev["parent_pid"], master))
            if a.mode == "nothread":
                lost = [t for t in ev["lost_threads"] if t.get("python_name") == "redis-listener"]
                if len(lost) != 1:
                    fail("worker %d: the lost listener thread is not named" % w, json.dumps(ev))
                continue
            carried = [g for g in ev.get("carried_greenlets", []) if g["python_name"] == "redis-listener"]
            if len(carried) != 1:
                fail("worker %d: the carried listener is not reported" % w, json.dumps(ev))
            g = carried[0]
            stack = [(f["file"], f["function"], f["line"]) for f in g["python_stack"]]
            created = [(f["file"], f["function"], f["line"]) for f in g["created_at"]]
            if g["kind"] != "thread" or g["library"] != "gevent" or (APP, "listener", mark("listener")) not in stack \
                    or (APP, "<module>", mark("created")) not in created:
                fail("worker %d: the carried listener's kind, stack or creation line is wrong" % w, json.dumps(ev))
            if g["stopped"] != (a.mode == "kill"):
                fail("worker %d: stopped=%s" % (w, g["stopped"]), json.dumps(ev))
        if a.mode == "report" and any(s != {"alive"} for s in states.values()):
            fail("report mode: the copies should still run in the workers: %s" % states)
        if a.mode == "kill":
            if any(s != {"dead"} for s in states.values()):
                fail("kill mode: the listener's copy is not dead in every worker: %s" % states)
            # At most one beat in a worker: a wake-up already due in the turn of the master's loop
            # that forked runs before the exception reaches it (README, Green threads: limits).
            ran = {w: beats.count(w) for w in set(beats) - {master}}
            if any(n > 1 for n in ran.values()):
                fail("kill mode: the listener went on running in %s, not only in the master %d" % (ran, master),
                     err + "\n".join(json.dumps(e) for e in reports))
            if ran:
                print("note: one last beat in %s before the stop landed" % sorted(ran))
        print("OK %s: master %d, workers %s: %s" % (a.mode, master, workers, {w: sorted(s) for w, s in states.items()}))


if __name__ == "__main__":
    main()
