# SPDX-License-Identifier: MIT
# The app of examples/gunicorn_preload_app.py with the kind of lock chosen by SERVER_APP_LOCK:
# `rlock` (threading.RLock: a semaphore on 3.13, a PyMutex that records its owner on 3.14),
# `lock` (threading.Lock: a PyMutex without an owner from 3.13.1) held in a `with` block, or
# `lock-bare` (the same Lock taken by a bare acquire()). A thread started at import holds it when
# the server forks its workers; every request takes it.
import os
import threading

KIND = os.environ.get("SERVER_APP_LOCK")
stats_lock = threading.RLock() if KIND == "rlock" else threading.Lock()
hits = [0]
_holding = threading.Event()


def _reporter():
    if KIND == "lock-bare":
        stats_lock.acquire()
        _holding.set()
        threading.Event().wait()  # MARK:reporter
    with stats_lock:
        _holding.set()
        threading.Event().wait()  # MARK:reporter


threading.Thread(target=_reporter, name="stats-reporter", daemon=True).start()
_holding.wait()


def app(environ, start_response):
    with stats_lock:
        hits[0] += 1
        n = hits[0]
    body = ("ok %d\n" % n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
