# SPDX-License-Identifier: MIT
# Scenarios for the Python-aware reports, for CPython 2.7 and 3.6+ (no f-strings). Each sets up
# threads deterministically (events, never sleeps), forks, and prints one line
#   FACTS {json}
# with what the driver (check_report.py) needs: pids, thread names. Expected files, functions and
# line numbers are the `# MARK:` comments in these files, found by the driver.
#   report_scenarios.py named | default_names | library | multiprocessing | storm
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
release = threading.Event()


def facts(**kw):
    sys.stdout.write("FACTS " + json.dumps(kw) + "\n")
    sys.stdout.flush()


def hold_named(lock, ready):
    with lock:
        ready.set()
        release.wait()  # MARK:hold


def idle(ready):
    ready.set()
    release.wait()  # MARK:idle


def do_fork():
    pid = os.fork()  # MARK:fork
    if pid == 0:
        os._exit(0)
    return pid


def wait_child(pid):
    _, status = os.waitpid(pid, 0)
    return status


def start(target, *args, **kw):
    t = threading.Thread(target=target, args=args, **kw)
    t.daemon = True
    t.start()
    return t


def named():
    lock, ready = threading.Lock(), threading.Event()
    start(hold_named, lock, ready, name="metrics-flusher")
    ready.wait()
    pid = do_fork()
    facts(child=pid, status=wait_child(pid))


def default_names():
    r1, r2 = threading.Event(), threading.Event()
    t1, t2 = start(idle, r1), start(idle, r2)
    r1.wait()
    r2.wait()
    pid = do_fork()
    facts(child=pid, status=wait_child(pid), names=sorted([t1.name, t2.name]))


def library():
    import libthread_mod
    pid = do_fork()
    facts(child=pid, status=wait_child(pid))
    libthread_mod.stop()


def square(n):
    with mp_lock:  # repaired in the worker
        return n * n


mp_lock = threading.Lock()


def multiprocessing_case():
    import multiprocessing
    ready = threading.Event()
    start(hold_named, mp_lock, ready, name="mp-holder")
    ready.wait()
    ctx = multiprocessing.get_context("fork") if hasattr(multiprocessing, "get_context") else multiprocessing
    pool = ctx.Pool(2)
    result = pool.map_async(square, range(6)).get(timeout=30)
    pids = sorted(p.pid for p in pool._pool)
    pool.close()
    pool.join()
    facts(result=result, workers=pids)


def storm():
    """Threads start and end threads while another thread forks in a loop."""
    stop = threading.Event()
    lock = threading.Lock()
    counter = [0]

    def short():
        with lock:
            counter[0] += 1

    def spawner():
        while not stop.is_set():
            ts = [start(short) for _ in range(4)]
            for t in ts:
                t.join()

    spawners = [start(spawner) for _ in range(3)]
    failures = []

    def forker():
        for _ in range(60):
            pid = os.fork()
            if pid == 0:
                with lock:  # may have been held by a lost thread: repaired
                    counter[0] += 1
                os._exit(0)
            status = wait_child(pid)
            if status != 0:
                failures.append(status)

    f = start(forker)
    f.join()
    stop.set()
    for t in spawners:
        t.join()
    facts(failures=failures, forks=60)


if __name__ == "__main__":
    case = sys.argv[1]
    {"named": named, "default_names": default_names, "library": library,
     "multiprocessing": multiprocessing_case, "storm": storm}[case]()
    release.set()
