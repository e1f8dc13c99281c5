#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Green threads carried into forked children (gevent, eventlet): runs one scenario of
# green_prog.py without the shim (the listener's copy really runs in the child) and with it
# (JSON report, and text for the first case), and checks the child's fork report as a user reads
# it: the carried listener with its name, stack and creation line; the Dummy greenlet; never the
# hub, a dead greenlet or the forking greenlet; the main greenlet when another one forks; with
# FORKSAFE_GREEN=kill, every carried greenlet but the main one stopped, and the listener runs only
# in the parent. With patch_all(thread=False) the listener is an OS thread, lost at the fork:
# the lost-thread report names it.
#   check_green.py --shim build/lib/libforksafe.so --case gevent-fork [--root trixie]
# --root runs the same checks inside a Debian root (tests/lib/forksafe_test.py) with its own Python and gevent.
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROG = os.path.join(HERE, "green_prog.py")
SKIP = 77

CASES = {
    "gevent-fork": dict(lib="gevent", expect="runs", text=True),
    "gevent-kill": dict(lib="gevent", expect="stopped", green="kill"),
    "gevent-mp": dict(lib="gevent", fork="mp", expect="runs"),
    "gevent-mp-kill": dict(lib="gevent", fork="mp", expect="stopped", green="kill"),
    "gevent-from-greenlet": dict(lib="gevent", fork_from="greenlet", expect="runs"),
    "gevent-from-greenlet-kill": dict(lib="gevent", fork_from="greenlet", expect="stopped", green="kill"),
    "gevent-nothread": dict(lib="gevent", patch="nothread", expect="lost"),
    "gevent-nothread-mp": dict(lib="gevent", patch="nothread", fork="mp", expect="lost"),
    "eventlet-fork": dict(lib="eventlet", expect="runs"),
    "eventlet-kill": dict(lib="eventlet", expect="stopped", green="kill"),
    "eventlet-nothread": dict(lib="eventlet", patch="nothread", expect="lost"),
}


def fail(msg, events=(), extra=""):
    print("FAIL: " + msg)
    if extra:
        print(extra.rstrip()[-6000:])
    for e in events:
        print("  " + json.dumps(e))
    sys.exit(1)


def mark(name):
    with open(PROG) as f:
        for n, line in enumerate(f, 1):
            if "# MARK:" + name in line:
                return n
    raise SystemExit("no MARK:%s" % name)


def run(python, c, shim, tmp, fmt="json"):
    hb = os.path.join(tmp, "hb-%s-%s" % (fmt, "shim" if shim else "plain"))
    logs = os.path.join(tmp, "logs-%s" % fmt)
    os.makedirs(logs, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSAFE_", "LD_PRELOAD"))}
    if shim:
        env.update(LD_PRELOAD=shim, FORKSAFE_FORMAT=fmt, FORKSAFE_LOG=os.path.join(logs, "fs-%p.log"))
        if c.get("green"):
            env["FORKSAFE_GREEN"] = c["green"]
    cmd = [python, PROG, "--lib", c["lib"], "--patch", c.get("patch", "all"), "--fork", c.get("fork", "os"),
           "--fork-from", c.get("fork_from", "main"), "--expect", c["expect"], "--hb", hb]
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                           universal_newlines=True)
    except subprocess.TimeoutExpired as e:
        fail("timed out: %s" % " ".join(cmd), extra=e.output or "")
    text = ""
    for path in sorted(glob.glob(os.path.join(logs, "fs-*.log"))):
        with open(path) as f:
            text += f.read()
        os.unlink(path)
    with open(hb) as f:
        ids = [dict(kv.split("=") for kv in l.split()[1:]) for l in f.read().split("\n") if l.startswith("ids ")][0]
    return p.returncode, p.stdout, text, {k: int(v) for k, v in ids.items()}


def frames(obj, key="python_stack"):
    return [(f["file"], f["function"], f["line"]) for f in obj.get(key, [])]


def check(python, name, c, shim):
    lib = c["lib"]
    if subprocess.run([python, "-c", "import " + lib], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        print("SKIP: %s cannot import %s" % (python, lib))
        sys.exit(SKIP)
    kill = c.get("green") == "kill"
    with tempfile.TemporaryDirectory() as tmp:
        # Without the shim: the bug is real (the copy runs in the child; 5: it ran where it should
        # not). Not for a lost OS thread: a child may hang on a lock it held (what the shim repairs).
        if c["expect"] != "lost":
            code, out, _, _ = run(python, c, None, tmp)
            want = {"runs": 0, "stopped": 5}[c["expect"]]
            if code != want:
                fail("without the shim: exit %s, expected %s" % (code, want), extra=out)
        code, out, log, ids = run(python, c, shim, tmp)
        if code != 0:
            fail("with the shim: exit %s" % code, extra=out + log)
        events = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
        forks = [e for e in events if e["event"] == "fork"]
        if len(forks) != 1:
            fail("expected one fork event (the child's), got %d" % len(forks), events, out + log)
        ev = forks[0]
        if c["expect"] == "lost":  # an OS thread: lost, named, no green thread
            # Its stack is its hub's (the listener greenlet waits, suspended, inside that thread).
            lost = [t for t in ev["lost_threads"] if t.get("python_name") == "redis-listener"]
            if len(lost) != 1 or not frames(lost[0]):
                fail("the lost listener thread is not named, with a stack", events)
            if any(g["python_name"] == "redis-listener" for g in ev.get("carried_greenlets", [])):
                fail("an OS thread reported as a green thread", events)
            print("OK %s: lost thread 'redis-listener' reported" % name)
            return
        if ev["lost_threads_total"] != 0:
            fail("a green process lost OS threads?", events)
        carried = ev.get("carried_greenlets", [])
        if ev.get("carried_greenlets_total") != len(carried):
            fail("carried_greenlets_total disagrees with the list", events)
        listener = [g for g in carried if g["python_name"] == "redis-listener"]
        if len(listener) != 1:
            fail("the listener is not reported once as carried", events)
        g = listener[0]
        if g["library"] != lib or g["kind"] != "thread" or g["stopped"] != kill:
            fail("listener: library/kind/stopped wrong", events)
        if (PROG, "listener", mark("listener")) not in frames(g):
            fail("listener: its stack lacks %s:%d in listener" % (PROG, mark("listener")), events)
        if lib == "gevent" and (PROG, "<module>", mark("created")) not in frames(g, "created_at"):
            fail("listener: created_at lacks %s:%d" % (PROG, mark("created")), events)
        dummies = [d for d in carried if d["kind"] == "dummy" and
                   (PROG, "dummy_loop", mark("dummy")) in frames(d)]
        if len(dummies) != 1 or dummies[0]["stopped"] != kill:
            fail("the running Dummy greenlet is not reported once (stopped=%s)" % kill, events)
        idents = [d["ident"] for d in carried]
        if ids["dead"] in idents or ids["hub"] in idents:
            fail("a dead greenlet or the hub reported as carried (ids %s)" % ids, events)
        mains = [d for d in carried if d["ident"] == ids["main"]]
        if c.get("fork_from") == "greenlet":
            if len(mains) != 1 or mains[0]["kind"] != "main" or mains[0]["python_name"] != "MainThread" or \
                    mains[0]["stopped"]:
                fail("forked from a greenlet: the main greenlet is not reported (never stopped)", events)
        elif mains:
            fail("the forking (main) greenlet reported as carried", events)
        if len(carried) != 2 + len(mains):
            fail("unexpected greenlets reported", events)
        if c.get("text"):
            code, out, log, _ = run(python, c, shim, tmp, "text")
            line = r"forksafe\[\d+\]:   carried %s green thread 0x[0-9a-f]+ \(Python 'redis-listener'\), created at %s:%d in <module>$" % (
                lib, re.escape(PROG), mark("created"))
            head = r"the child lost 0 threads and carries 2 green threads \(%s\), which go on running in it" % lib
            if code != 0 or not re.search(line, log, re.M) or not re.search(head, log):
                fail("text report: expected the header and the line\n  " + line, extra=log)
            stack = r"^forksafe\[\d+\]:       File \"%s\", line %d, in listener$" % (re.escape(PROG), mark("listener"))
            if not re.search(stack, log, re.M):
                fail("text report: the listener's stack is missing", extra=log)
        print("OK %s: %d carried greenlets reported%s" % (name, len(carried), ", stopped" if kill else ""))


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
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--root", help="run inside this Debian root (made by scripts/make-roots.sh)")
    ap.add_argument("--python", default="/usr/bin/python3")
    a = ap.parse_args()
    shim = os.path.abspath(a.shim)
    if a.root:
        r = in_root(a.root, ["python3", os.path.abspath(__file__), "--shim", shim, "--case", a.case,
                             "--python", "/usr/bin/python3"])
        sys.exit(r)
    if not os.path.exists(a.python):
        print("SKIP: no %s" % a.python)
        sys.exit(SKIP)
    check(a.python, a.case, CASES[a.case], shim)


if __name__ == "__main__":
    main()
