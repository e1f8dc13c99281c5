# SPDX-License-Identifier: MIT
# Workload 6: threading.Thread(target=f).start() then .join(), one thread at a time, f returns
# at once. Goes through pthread_create (wrapped) and several lock hand-offs between the two
# threads (the started Event, the thread-state lock that join waits on).
# Prints microseconds per start+join, the fastest of the repetitions (and their median), as one
# JSON line.
#   /usr/bin/python3 py_threads.py [--quick] [--iters N] [--reps R]
import argparse
import json
import statistics
import threading
import time


def nothing():
    pass


def timed_loop(n):
    for _ in range(n):
        t = threading.Thread(target=nothing)
        t.start()
        t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-warmup", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.iters, a.reps = 20, 1
    if not a.no_warmup:
        timed_loop(a.iters // 10 + 1)
    per = []
    for _ in range(a.reps):
        t0 = time.perf_counter_ns()
        timed_loop(a.iters)
        per.append((time.perf_counter_ns() - t0) / 1e3 / a.iters)
    print(json.dumps({"bench": "py_threads", "unit": "us/thread", "value": min(per), "median": statistics.median(per),
                      "min": min(per), "max": max(per), "reps": a.reps, "iters": a.iters}), flush=True)


if __name__ == "__main__":
    main()
