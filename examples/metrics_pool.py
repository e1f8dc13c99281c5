# SPDX-License-Identifier: MIT
# The classic: a background thread (here a metrics flusher) holds its lock at the moment a
# multiprocessing pool forks its workers. Every worker then waits forever for that lock.
#
#   python3 examples/metrics_pool.py                                      # hangs (gives up after 5 s)
#   LD_PRELOAD=build/lib/libforksafe.so python3 examples/metrics_pool.py  # finishes, with a report
#
# Deterministic: the flusher says when it holds the lock, and the pool is created only then.
# Works on CPython 2.7 to 3.13.0, whose threading.Lock is a POSIX semaphore.
import multiprocessing
import os
import sys
import threading

metrics_lock = threading.Lock()
counts = {}
holding = threading.Event()
stop_flushing = threading.Event()


def flusher():
    """Holds the lock while 'sending' the metrics, as a slow network write would."""
    with metrics_lock:
        holding.set()
        stop_flushing.wait()


def handle(n):
    with metrics_lock:          # a worker updates a metric: this is where it hangs
        counts[n] = counts.get(n, 0) + 1
    return n * n


def main():
    t = threading.Thread(target=flusher, name="metrics-flusher")
    t.start()
    holding.wait()
    ctx = multiprocessing.get_context("fork") if hasattr(multiprocessing, "get_context") else multiprocessing
    pool = ctx.Pool(2)
    try:
        result = pool.map_async(handle, range(8)).get(timeout=5)
        print("pool results: %s" % result)
        status = 0
    except multiprocessing.TimeoutError:
        print("the pool's workers are stuck on metrics_lock (pid %d): giving up after 5 s" % os.getpid())
        status = 1
    pool.terminate()
    pool.join()
    stop_flushing.set()
    t.join()
    sys.exit(status)


if __name__ == "__main__":
    main()
