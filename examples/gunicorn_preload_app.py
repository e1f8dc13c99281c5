# SPDX-License-Identifier: MIT
# A WSGI app that starts a thread at import -- as metrics and monitoring clients do -- and that
# thread holds the stats lock when gunicorn --preload forks its workers. Each request updates the
# stats under that lock: without libforksafe every worker hangs on its first request.
#
#   gunicorn --preload -w 2 --chdir examples gunicorn_preload_app:app            # requests hang
#   LD_PRELOAD=$PWD/build/lib/libforksafe.so \
#     gunicorn --preload -w 2 --chdir examples gunicorn_preload_app:app          # requests answered
#
# tests/servers/check_gunicorn.py runs exactly this app.
import threading

stats_lock = threading.Lock()
hits = [0]
_holding = threading.Event()


def _reporter():
    with stats_lock:            # e.g. sending the stats over a slow connection
        _holding.set()
        threading.Event().wait()  # MARK:reporter ... that never finishes while the master lives


threading.Thread(target=_reporter, name="stats-reporter", daemon=True).start()
_holding.wait()  # deterministic: the lock is held before the master forks any worker


def app(environ, start_response):
    with stats_lock:
        hits[0] += 1
        n = hits[0]
    body = ("ok %d\n" % n).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
