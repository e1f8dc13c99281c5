# SPDX-License-Identifier: MIT
# Workload 7: os.fork() from a Python process with --threads T (default 100) idle threads, each
# started with threading.stack_size(256 KiB) and blocked in os.read() on a pipe. The child calls
# os._exit(0) at once; the parent os.waitpid()s it. With the shim, each child of this
# multi-threaded process writes a fork report at _exit (run with FORKSAFE_LOG=/dev/null).
# Prints microseconds per fork+exit+wait, the fastest of the repetitions (and their median), and
# the minor page faults per fork (parent + child, getrusage), as one JSON line.
#   /usr/bin/python3 py_fork.py [--quick] [--threads T] [--iters N] [--reps R] [--depth D]
#                               [--held [--child-takes]]
# Workload 15 (current Pythons, in the Debian roots): --depth 50 blocks each thread 50 Python
# frames deep; --held has each hold a Lock of its own in a `with` block there (what the shim reads
# from the frames at each fork); --child-takes has the child take every one of those Locks before
# it exits -- the repair work (without the shim that child would hang: run it with the shim only).
import argparse
import json
import os
import resource
import statistics
import threading
import time

STACK = 256 * 1024


def timed_loop(n, child_takes=()):
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            for lock in child_takes:
                lock.acquire()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit("child ended with status %#x" % status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=100)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--depth", type=int, default=0, help="Python frames each thread is deep when it blocks")
    ap.add_argument("--held", action="store_true", help="each thread holds a Lock of its own in a with block")
    ap.add_argument("--child-takes", action="store_true", help="the child takes every held Lock (needs the shim)")
    a = ap.parse_args()
    if a.quick:
        a.threads, a.iters, a.reps = 4, 5, 1
    r, w = os.pipe()
    threading.stack_size(STACK)
    started = threading.Semaphore(0)

    locks = [threading.Lock() for _ in range(a.threads)] if a.held else []

    def block(i):
        if a.held:
            with locks[i]:
                started.release()
                os.read(r, 1)
        else:
            started.release()
            os.read(r, 1)

    def nest(i, depth):
        if depth > 1:
            return nest(i, depth - 1)
        return block(i)

    def idle(i):
        nest(i, a.depth)

    threads = [threading.Thread(target=idle, args=(i,), daemon=True) for i in range(a.threads)]
    for t in threads:
        t.start()
    for _ in threads:
        started.acquire()
    takes = locks if a.child_takes else ()
    if not a.no_warmup:
        timed_loop(a.iters // 10 + 1, takes)
    per = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt + resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    for _ in range(a.reps):
        t0 = time.perf_counter_ns()
        timed_loop(a.iters, takes)
        per.append((time.perf_counter_ns() - t0) / 1e3 / a.iters)
    f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt + resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    print(json.dumps({"bench": "py_fork", "unit": "us/fork", "value": min(per), "median": statistics.median(per),
                      "min": min(per), "max": max(per), "reps": a.reps, "iters": a.iters,
                      "threads": a.threads, "stack_kib": STACK // 1024, "depth": a.depth, "held": a.held,
                      "child_takes": a.child_takes,
                      "minflt_per_fork": round((f1 - f0) / (a.iters * a.reps), 2)}), flush=True)
    os.close(w)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
