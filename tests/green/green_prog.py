# SPDX-License-Identifier: MIT
# Green threads and forks: one scenario, run by check_green.py (Python 3.6+, with gevent or
# eventlet importable). A "Redis listener" thread is started after the monkey-patching, as a
# Flask app does at import; it appends "hb PID" to a heartbeat file every 20 ms and "end PID" in
# its `finally`. Then the process forks and the child checks, by itself, what the issue is about:
#   --expect runs     the listener's copy goes on running in the child (it writes "hb CHILD")
#   --expect stopped  it does not: the child sees "end CHILD" and the greenlet dead, and at most
#                     one heartbeat of its own (FORKSAFE_GREEN=kill; see README, Green threads)
#   --expect lost     patch_all(thread=False): the listener is an OS thread, lost at the fork
# Also present in the parent at the fork, to check what the report leaves out or puts in:
#   - a greenlet spawned directly that asked threading who it is ("Dummy"), still running;
#   - gevent: a raw greenlet that did the same and has finished (dead; gevent keeps its Dummy while
#     the greenlet object lives);
#   - gevent's hub, made to ask too (its Dummy is in threading's table);
#   - with --fork-from greenlet, the main greenlet, blocked in join() while a spawned greenlet forks.
# The first line of the heartbeat file says which idents these are: "ids dead=.. hub=.. main=..".
# Exit status: 0 when the child saw what --expect says; 3 (runs: the copy never ran), 4 (stopped:
# not stopped in time), 5 (stopped: the copy went on running in the child), 6 (the child did not
# end in time).
import os
import sys

# The parent waits for its child with the real waitpid: gevent's, with patch_all(thread=False),
# may wait on a child watcher of the hub of another OS thread (the listener's) and never see it.
RAW_WAITPID = os.waitpid

# The patch first, as an application does (eventlet's monkey_patch can hang on locks that modules
# such as argparse's imports have already made).
LIB = sys.argv[sys.argv.index("--lib") + 1]
THREADS = not ("--patch" in sys.argv and sys.argv[sys.argv.index("--patch") + 1] == "nothread")
if LIB == "gevent":
    from gevent import monkey
    monkey.patch_all(thread=THREADS)
    import gevent
    spawn, get_hub = gevent.spawn, gevent.get_hub
else:
    import eventlet
    eventlet.monkey_patch() if THREADS else eventlet.monkey_patch(thread=False)  # thread=True: thread alone
    import eventlet.hubs
    spawn, get_hub = eventlet.spawn, eventlet.hubs.get_hub

import argparse  # noqa: E402
import time  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--lib", choices=["gevent", "eventlet"], required=True)
ap.add_argument("--patch", choices=["all", "nothread"], default="all")
ap.add_argument("--fork", choices=["os", "mp"], default="os")
ap.add_argument("--fork-from", choices=["main", "greenlet"], default="main")
ap.add_argument("--expect", choices=["runs", "stopped", "lost"], required=True)
ap.add_argument("--hb", required=True)
a = ap.parse_args()

import greenlet  # noqa: E402
import threading  # noqa: E402

HB = a.hb
LISTENER = []


def note(line):
    with open(HB, "a") as f:  # one short write in append mode: lines never mix
        f.write(line + "\n")


def lines():
    with open(HB) as f:
        return f.read().split("\n")


def listener():
    LISTENER.append(greenlet.getcurrent())
    try:
        while True:
            note("hb %d" % os.getpid())
            time.sleep(0.02)  # MARK:listener
    finally:
        note("end %d" % os.getpid())


def dummy_loop():
    threading.current_thread()  # registers this greenlet with threading (a Dummy)
    while True:
        time.sleep(0.02)  # MARK:dummy


def wait_for(cond, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)  # yields to the hub: polls a condition, decides nothing
    return False


def child_main():
    me = os.getpid()
    if a.expect == "runs":
        return 0 if wait_for(lambda: "hb %d" % me in lines()) else 3
    if a.expect == "lost":
        return 0
    # stopped: the copy ends here. It may beat once first, when its wake-up was already due in
    # the turn of the hub's loop that resumed the forking greenlet (README: Green threads); twice
    # means it went on running.
    beats = lambda: lines().count("hb %d" % me)  # noqa: E731
    ok = wait_for(lambda: beats() >= 2 or ("end %d" % me in lines() and LISTENER[0].dead))
    if beats() >= 2:
        return 5
    if not ok:
        return 4
    if a.patch == "all" and not DUMMY.dead:
        return 4
    return 0


def fork_and_wait():
    if a.fork == "mp":
        import multiprocessing
        p = multiprocessing.get_context("fork").Process(target=lambda: os._exit(child_main()))
        p.start()
        pid = p.pid
    else:
        pid = os.fork()
        if pid == 0:
            os._exit(child_main())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            done, status = RAW_WAITPID(pid, os.WNOHANG)
        except ChildProcessError:  # gevent's child watcher reaped it: it has the status
            done, status = os.waitpid(pid, 0)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    return 6


t = threading.Thread(target=listener, name="redis-listener", daemon=True)
t.start()  # MARK:created
DUMMY = spawn(dummy_loop)
dead = greenlet.greenlet(threading.current_thread)
if a.lib == "gevent":
    dead.switch()  # runs to its end: a dead greenlet whose Dummy gevent keeps while it lives
hub = get_hub()
if a.lib == "gevent":
    hub.loop.run_callback(threading.current_thread)  # the hub asks too
main = greenlet.getcurrent()
note("ids dead=%d hub=%d main=%d" % (id(dead), id(hub if a.lib == "gevent" else hub.greenlet), id(main)))
if not wait_for(lambda: "hb %d" % os.getpid() in lines()):
    sys.exit("the listener never ran in the parent")
time.sleep(0)  # one more turn of the hub: the Dummy has registered
if a.fork_from == "greenlet":
    g = spawn(fork_and_wait)
    g.join() if a.lib == "gevent" else None
    code = g.get() if a.lib == "gevent" else g.wait()
else:
    code = fork_and_wait()
sys.stdout.flush()
os._exit(code)  # no interpreter shutdown with gevent running in another OS thread (it may crash)
