# SPDX-License-Identifier: MIT
# Workload 14: the GIL handed back and forth. Two threads run pure Python loops with a switch
# interval of 5 µs, so the interpreter forces a GIL handoff every few microseconds: each is a
# pthread_mutex_lock/unlock pair and condition-variable traffic in CPython's ceval_gil.c (the
# shim wraps the mutex calls). Prints ns per loop iteration (both threads' iterations counted),
# the fastest of the repetitions (and their median), as one JSON line.
#   /usr/bin/python3 py_gil.py [--quick] [--iters N] [--reps R]
import argparse
import json
import statistics
import sys
import threading
import time


def spin(n):
    x = 0
    for _ in range(n):
        x += 1
    return x


def timed_round(n):
    t = threading.Thread(target=spin, args=(n,))
    t0 = time.perf_counter_ns()
    t.start()
    spin(n)
    t.join()
    return (time.perf_counter_ns() - t0) / (2 * n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=2000000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-warmup", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.iters, a.reps = 20000, 1
    sys.setswitchinterval(5e-6)
    if not a.no_warmup:
        timed_round(a.iters // 4 + 1)
    per = [timed_round(a.iters) for _ in range(a.reps)]
    print(json.dumps({"bench": "py_gil", "unit": "ns/iter", "value": min(per), "median": statistics.median(per),
                      "min": min(per), "max": max(per), "reps": a.reps, "iters": a.iters}), flush=True)


if __name__ == "__main__":
    main()
