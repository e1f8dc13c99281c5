# SPDX-License-Identifier: MIT
# A WSGI app for the Docker and systemd examples: at import it starts a metrics thread that holds
# the app's RLock (as a client flushing its buffer does) while gunicorn --preload forks the
# workers. An RLock, because that is what CPython 3.13.1+ still lets a preload repair (a plain
# threading.Lock there is reported, not repaired: README, "Python coverage"); on 2.7 to 3.13.0
# every lock kind is. Without libforksafe each worker hangs on its first request; with it the
# lock is handed to the worker and reported.
#
#   gunicorn --preload -w 2 -b 127.0.0.1:8000 --chdir examples/docker app:app          # hangs
#   forksafe gunicorn --preload -w 2 -b 127.0.0.1:8000 --chdir examples/docker app:app # answers
import os
import threading

metrics_lock = threading.RLock()
hits = [0]
_holding = threading.Event()


def _flush_metrics():
    with metrics_lock:             # a flush over a slow connection...
        _holding.set()
        threading.Event().wait()   # ...that never ends while the master lives


threading.Thread(target=_flush_metrics, name="metrics-flusher", daemon=True).start()
_holding.wait()  # deterministic: the lock is held before the master forks any worker


def app(environ, start_response):
    with metrics_lock:
        hits[0] += 1
        n = hits[0]
    body = ("ok %d from worker %d\n" % (n, os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
