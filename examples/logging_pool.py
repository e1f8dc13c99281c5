# SPDX-License-Identifier: MIT
# A logging thread is stuck inside StreamHandler.emit -- the handler writes to a pipe to a log
# collector that has stalled -- when a multiprocessing pool forks. The workers' first log line
# needs the locks that thread holds (the handler's lock on 2.7/3.6, the stream's buffer lock on
# every version), so every worker hangs. As in gunicorn #3529.
#
#   python3 examples/logging_pool.py                                      # hangs (gives up after 5 s)
#   LD_PRELOAD=build/lib/libforksafe.so python3 examples/logging_pool.py  # finishes, with a report
#
# Deterministic: we wait until the logging thread is really blocked in write(2) before forking.
import errno
import fcntl
import io
import logging
import multiprocessing
import os
import sys
import threading
import time

log = logging.getLogger("app")


def thread_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    import ctypes
    return ctypes.CDLL(None).syscall(186)  # gettid, x86_64


def stalled_collector():
    """A pipe to a 'log collector' that has stopped reading: full, so the next write blocks."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    filler = 0
    try:
        while True:
            filler += os.write(w, b"\n" * 65536)
    except OSError as e:
        if e.errno != errno.EAGAIN:
            raise
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return r, w


def blocked_in_write(tid):
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0] == "1"  # write(2)
    except (IOError, OSError, IndexError):
        return False


def work(n):
    log.warning("worker %d handling item %d", os.getpid(), n)  # hangs here without the shim
    return n


def main():
    collector, w = stalled_collector()
    # A buffered io stream, as a file or socket is (2.7's str is bytes: a binary one there).
    handler = logging.StreamHandler(io.open(w, "wb" if sys.version_info[0] == 2 else "w"))
    handler.setFormatter(logging.Formatter("%(process)d %(message)s"))
    log.addHandler(handler)
    tids = []

    def chatty():
        tids.append(thread_id())
        log.warning("background thread: a status line")

    t = threading.Thread(target=chatty, name="status-logger")
    t.start()
    deadline = time.time() + 10
    while not (tids and blocked_in_write(tids[0])):  # a condition with a deadline, not a guess
        if time.time() > deadline:
            sys.exit("setup failed: the logging thread did not block")
        time.sleep(0.01)

    ctx = multiprocessing.get_context("fork") if hasattr(multiprocessing, "get_context") else multiprocessing
    pool = ctx.Pool(2)

    def drain():  # the collector resumes: show what it receives
        while True:
            data = os.read(collector, 65536)
            if not data:
                break
            data = data.strip(b"\n")
            if data:
                sys.stdout.write("collector: " + data.decode() + "\n")
                sys.stdout.flush()
    d = threading.Thread(target=drain)
    d.daemon = True
    d.start()
    try:
        pool.map_async(work, range(4)).get(timeout=5)
        print("every worker logged")
        status = 0
    except multiprocessing.TimeoutError:
        print("the pool's workers are stuck in logging: giving up after 5 s")
        status = 1
    pool.terminate()
    pool.join()
    t.join()
    sys.exit(status)


if __name__ == "__main__":
    main()
