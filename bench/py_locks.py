# SPDX-License-Identifier: MIT
# Workload 5: a threading.Lock and a threading.RLock, each acquired and released in a tight
# loop on one thread. On CPython 3.11 (Debian's /usr/bin/python3) both are POSIX semaphores:
# an uncontended acquire is one sem_trywait and a release one sem_post, so one loop iteration
# makes four wrapped calls. Prints ns per iteration (Lock acquire+release + RLock
# acquire+release), the fastest of the repetitions (and their median), as one JSON line.
#   /usr/bin/python3 py_locks.py [--quick] [--iters N] [--reps R]
import argparse
import json
import statistics
import threading
import time


def timed_loop(n, lock, rlock):
    la, lr, ra, rr = lock.acquire, lock.release, rlock.acquire, rlock.release
    for _ in range(n):
        la()
        lr()
        ra()
        rr()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=200000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-warmup", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.iters, a.reps = 1000, 1
    lock, rlock = threading.Lock(), threading.RLock()
    if not a.no_warmup:
        timed_loop(a.iters // 4 + 1, lock, rlock)
    per = []
    for _ in range(a.reps):
        t0 = time.perf_counter_ns()
        timed_loop(a.iters, lock, rlock)
        per.append((time.perf_counter_ns() - t0) / a.iters)
    print(json.dumps({"bench": "py_locks", "unit": "ns/iter", "value": min(per), "median": statistics.median(per),
                      "min": min(per), "max": max(per), "reps": a.reps, "iters": a.iters}), flush=True)


if __name__ == "__main__":
    main()
