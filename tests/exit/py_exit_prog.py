# SPDX-License-Identifier: MIT
# Python programs that end (or exec) with or without threads left, for check_py_joined.py and
# check_py_exec.py. Runs on Python 2.7 and 3.6+.
#   python py_exit_prog.py MODE
# Modes that end normally (the runtime joins or cuts off threads at its normal exit):
#   pool        a ThreadPoolExecutor runs two short jobs; no shutdown call: Python joins its
#               workers at exit (3.9+: threading._register_atexit; before: an atexit hook).
#   nondaemon   a non-daemon thread is still working when main ends: Python joins it.
#   daemon      a daemon thread "idle-daemon" is blocked in Event.wait() when main ends.
#   sysexit     as daemon, ending with sys.exit(0).
#   osexit      as daemon, ending with os._exit(0).
#   mixed       pool + nondaemon + daemon together: only the daemon thread is cut off.
#   busy        a daemon thread "busy-daemon" runs pure Python work, never waiting, when main ends.
# Modes that exec (the daemon thread is alive in every one):
#   execv       os.execv("/bin/true", ["true"]) from main.
#   popen_preexec   subprocess.Popen(["/bin/true"], preexec_fn=...): fork, run Python in the
#               child, then exec; then the parent ends normally.
#   popen       subprocess.Popen(["/bin/true"]) (vfork + exec on 3.10+, fork + exec before).
#   forkexec    os.fork(); the child calls os.execv("/bin/true") at once.
# Listing on demand:
#   dump        the daemon thread (which blocks SIGUSR1/SIGUSR2, 3.3+) is idle; main prints READY
#               and reads stdin until end of file, while the driver signals the process.
# It prints lines the driver parses:
#   DAEMON <tid>        the idle daemon thread's native id, once it is blocked in Event.wait
#   BUSY <tid>          the busy daemon thread's native id, once it runs
#   POOL <tid> ...      native ids of the pool's worker threads that ran a job
#   POOL_NAMES <name> ...   the names of all the pool's worker threads
#   NONDAEMON <tid>     the non-daemon thread's native id
#   CHILD <pid>         the child of popen*/forkexec
#   MAIN <tid>, READY   (dump)
from __future__ import print_function

import os
import signal
import subprocess
import sys
import threading
import time

try:
    import concurrent.futures
except ImportError:  # Python 2.7 without the futures backport
    concurrent = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import program_helpers  # noqa: E402


def say(*words):
    # Straight to the file descriptor: nothing may stay in a buffer at os._exit or exec.
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


def idle_daemon_main(stop, box):
    if hasattr(signal, "pthread_sigmask"):  # 3.3+: signals to the process go to main (dump)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGUSR2])
    box.append(program_helpers.gettid())
    stop.wait()  # MARK:idle_wait


def start_idle_daemon():
    stop = threading.Event()
    box = []
    t = threading.Thread(target=idle_daemon_main, args=(stop, box), name="idle-daemon")
    t.daemon = True
    t.start()
    program_helpers.wait_until(lambda: box, "the daemon thread to start")
    program_helpers.wait_blocked_in(box[0], t.ident, "wait", ("threading.py",), "the daemon in Event.wait")
    say("DAEMON", box[0])
    return t


def pool_job(x):
    return program_helpers.gettid()


def start_pool():
    if concurrent is None:
        say("POOL")  # no ThreadPoolExecutor here
        return None
    ex = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futs = [ex.submit(pool_job, i) for i in range(2)]
    tids = sorted(set(f.result(timeout=30) for f in futs))
    say("POOL", *tids)
    say("POOL_NAMES", *sorted(t.name for t in ex._threads))
    return ex  # deliberately never shut down


def nondaemon_main(go, box):
    box.append(program_helpers.gettid())
    go.wait(30)
    # Still some work after main has ended: the runtime must wait for this.
    deadline = time.time() + 0.2
    while time.time() < deadline:
        pass


def start_nondaemon():
    go = threading.Event()
    box = []
    t = threading.Thread(target=nondaemon_main, args=(go, box), name="nondaemon-worker")
    t.start()
    program_helpers.wait_until(lambda: box, "the non-daemon thread to start")
    say("NONDAEMON", box[0])
    return go


def busy_daemon_main(box):
    box.append(program_helpers.gettid())
    n = 0
    # Pure Python work, never waiting: the job a daemon thread is cut off in. Locals and constants
    # only: 2.7 empties modules and builtins at exit (even `True` is a name there), and the
    # NameError would end the thread by itself.
    while 1:
        n = (n * 31 + 7) % 1000003  # MARK:busy_loop


def start_busy_daemon():
    box = []
    t = threading.Thread(target=busy_daemon_main, args=(box,), name="busy-daemon")
    t.daemon = True
    t.start()
    program_helpers.wait_until(lambda: box, "the busy daemon thread to start")
    say("BUSY", box[0])
    return t


def main():
    mode = sys.argv[1]
    keep = []
    if mode in ("pool", "mixed"):
        keep.append(start_pool())
    go = None
    if mode in ("nondaemon", "mixed"):
        go = start_nondaemon()
    if mode in ("daemon", "sysexit", "osexit", "mixed", "execv", "popen_preexec", "popen", "forkexec", "dump"):
        keep.append(start_idle_daemon())
    if mode == "busy":
        keep.append(start_busy_daemon())

    if mode == "dump":
        say("MAIN", program_helpers.gettid())
        say("READY")
        while os.read(0, 4096):  # until the driver closes stdin; it signals us meanwhile
            pass

    if mode == "execv":
        os.execv("/bin/true", ["true"])
    elif mode in ("popen_preexec", "popen"):
        kw = {"preexec_fn": lambda: None} if mode == "popen_preexec" else {}
        p = subprocess.Popen(["/bin/true"], **kw)
        say("CHILD", p.pid)
        deadline = time.time() + 30
        while p.poll() is None:  # Popen.wait(timeout=) is 3.3+
            if time.time() > deadline:
                p.kill()
                raise SystemExit("child did not end")
            time.sleep(0.01)  # polling a condition with a deadline
        if p.returncode != 0:
            raise SystemExit("child exited %r" % p.returncode)
    elif mode == "forkexec":
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/bin/true", ["true"])
            finally:
                os._exit(127)
        say("CHILD", pid)
        _, status = os.waitpid(pid, 0)  # /bin/true ends at once
        if status != 0:
            raise SystemExit("child status %r" % status)

    if go is not None:
        go.set()  # the non-daemon thread now works a little longer than main
    if mode == "sysexit":
        sys.exit(0)
    if mode == "osexit":
        os._exit(0)
    # Normal end of the program.


if __name__ == "__main__":
    main()
