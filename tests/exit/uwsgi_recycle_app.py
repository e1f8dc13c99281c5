# SPDX-License-Identifier: MIT
# WSGI app for check_uwsgi_recycle.py (uWSGI, app loaded in the master, --max-requests 1).
# Each request hands a 2-second report job to a fire-and-forget daemon thread and returns, the
# way many apps "do it in the background". The worker is recycled right after the request, so
# the job is cut off in the middle: the exit report must name the thread and show it inside job().
# Before answering, the view waits (bounded) until the job thread really is asleep inside job()
# at the MARK line, so the report's stack is deterministic; the answer is "pid=P tid=T".
# The app also leaves facts in $RECYCLE_STATE_DIR (set by the driver):
#   job-<pid>.done      the job finished (it must not: the worker is recycled first)
#   atexit-<pid>        Python's atexit callbacks ran in that process
import atexit
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import program_helpers  # noqa: E402

STATE = os.environ.get("RECYCLE_STATE_DIR")
JOB_SECONDS = 2.0


def _touch(name):
    if STATE:
        with open(os.path.join(STATE, name), "w") as f:
            f.write("%d\n" % os.getpid())


def _atexit():
    _touch("atexit-%d" % os.getpid())


atexit.register(_atexit)


def job(seconds, box):
    box.append(program_helpers.gettid())
    time.sleep(seconds)  # MARK:job
    _touch("job-%d.done" % os.getpid())


with open(os.path.abspath(__file__)) as _f:
    JOB_LINE = [n for n, l in enumerate(_f, 1) if "# MARK:" + "job" in l][0]


def app(environ, start_response):
    box = []
    t = threading.Thread(target=job, args=(JOB_SECONDS, box), daemon=True, name="report-job")
    t.start()
    program_helpers.wait_until(lambda: box, "the job thread to start", timeout=5)
    program_helpers.wait_blocked_in(box[0], t.ident, "job", (os.path.basename(__file__),),
                           "the job asleep in job()", line=JOB_LINE, timeout=5)
    body = ("pid=%d tid=%d\n" % (os.getpid(), box[0])).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
