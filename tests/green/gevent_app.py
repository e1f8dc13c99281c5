# SPDX-License-Identifier: MIT
# The app: gevent's monkey.patch_all() at import, then a "Redis listener" thread started at
# import, as a Flask app behind `gunicorn -k gevent --preload` does. The listener appends
# "hb PID" to $GREEN_APP_HB every 50 ms. Each request answers "PID STATE": the state, in the
# worker that serves it, of the greenlet that ran the listener in the master: "alive" (its copy
# runs here too), "dead" (stopped here), "none" (an OS thread: patch_all(thread=False) with
# GREEN_APP_THREADS=0, lost at the fork).
#   GREEN_APP_HB=/tmp/hb gunicorn -k gevent --preload -w 2 --chdir tests/green gevent_app:app
import os

from gevent import monkey

monkey.patch_all(thread=os.environ.get("GREEN_APP_THREADS", "1") == "1")

import threading  # noqa: E402
import time  # noqa: E402

import greenlet  # noqa: E402

HB = os.environ["GREEN_APP_HB"]
LISTENER = []


def listener():
    if threading.current_thread().name == "redis-listener" and greenlet.getcurrent().parent is not None:
        LISTENER.append(greenlet.getcurrent())  # a green thread (not an OS thread's main greenlet)
    while True:
        with open(HB, "a") as f:
            f.write("hb %d\n" % os.getpid())
        time.sleep(0.05)  # MARK:listener


threading.Thread(target=listener, name="redis-listener", daemon=True).start()  # MARK:created


def app(environ, start_response):
    g = LISTENER[0] if LISTENER else None
    state = "none" if g is None else "dead" if g.dead else "alive"
    body = ("%d %s\n" % (os.getpid(), state)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                              ("Connection", "close")])
    return [body]
