#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Exit report of a recycled uWSGI worker (Debian's uwsgi-core + uwsgi-plugin-python3).
# uwsgi --master --processes 1 --max-requests 1 --min-worker-lifetime 0 --enable-threads, the app
# (uwsgi_recycle_app.py) loaded in the master. The one request hands a 2-second job to a daemon
# thread "report-job" and returns; the worker then reaches max-requests and ends, cutting the job
# off. How such a worker ends (uWSGI 2.0.21, seen with strace and an exit() probe): after the
# request, uwsgi_close_request -> simple_goodbye_cruel_world -> exit(0), called from the main
# thread through the PLT, with the job thread still alive; exit() runs uWSGI's atexit handler,
# which calls the Python plugin's atexit: Python's atexit callbacks, then Py_Finalize (skipped
# with --skip-atexit-teardown, and then Python's atexit callbacks do not run either); the process
# then ends with exit_group(0).
# Checked: the same run without the shim recycles the worker and leaves the job unfinished; with
# the shim, the old worker's pid writes one "exit" event, how "exit", that lists "report-job",
# busy, with job() at its MARK line in its Python stack.
#   check_uwsgi_recycle.py --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import (base_env, check_exit_event, driver_args, fail, free_port, has_frame, http_get,
                           mark, read_events, shim_env, skip, start_server, stop_gracefully, stop_kill,
                           wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))

UWSGI = "/usr/bin/uwsgi"
PLUGIN = "/usr/lib/uwsgi/plugins/python3_plugin.so"
APP = os.path.join(HERE, "uwsgi_recycle_app.py")


def uwsgi_log(tmp):
    with open(os.path.join(tmp, "uwsgi.log"), errors="replace") as f:
        return f.read()


def start(env, port, tmp):
    cmd = [UWSGI, "--plugin", "python3", "--master", "--processes", "1", "--max-requests", "1",
           "--min-worker-lifetime", "0", "--enable-threads", "--http-socket", "127.0.0.1:%d" % port,
           "--wsgi-file", APP, "--callable", "app", "--die-on-term"]
    return start_server(cmd, env, port, os.path.join(tmp, "uwsgi.log"), "uwsgi")


def get(port):
    status, body = http_get(port, timeout=15)
    if status != 200:
        fail("answer %d: %r" % (status, body))
    fields = dict(kv.split("=") for kv in body.split())
    return int(fields["pid"]), int(fields["tid"])


def gone(pid):
    """The process has ended (no longer in /proc, or a zombie not yet reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def one_recycle(env, tmp):
    """Starts uWSGI, makes the request that recycles the worker, waits until that worker has
    ended and a new one answers. Returns (old worker pid, job tid, new worker pid)."""
    state = os.path.join(tmp, "state")
    os.mkdir(state)
    env = dict(env, RECYCLE_STATE_DIR=state)
    port = free_port()
    proc = start(env, port, tmp)
    try:
        worker, job_tid = get(port)
        wait_for(lambda: gone(worker), 30, "worker %d to end after its max-requests" % worker)
        new_worker, _ = get(port)  # served by the respawned worker
        if new_worker == worker:
            fail("the second request was answered by the same worker %d: no recycle" % worker)
    except BaseException:
        stop_kill(proc)
        print(uwsgi_log(tmp))
        raise
    stop_gracefully(proc, "uwsgi", uwsgi_log(tmp))
    if os.path.exists(os.path.join(state, "job-%d.done" % worker)):
        fail("the job of worker %d finished: it was not cut off" % worker, extra=uwsgi_log(tmp))
    atexit_ran = os.path.exists(os.path.join(state, "atexit-%d" % worker))
    return worker, job_tid, new_worker, atexit_ran


def main():
    a = driver_args("shim")
    if not (os.path.exists(UWSGI) and os.path.exists(PLUGIN)):
        skip("Debian's uwsgi-core and uwsgi-plugin-python3 are not installed")
    line = mark(APP, "job")

    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain")
        os.mkdir(plain)
        w, _, w2, atexit_ran = one_recycle(base_env(), plain)
        print("without the shim: worker %d recycled after 1 request (new worker %d), job cut off; "
              "Python atexit callbacks ran in it: %s" % (w, w2, atexit_ran))

        logs = os.path.join(tmp, "shim")
        os.mkdir(logs)
        w, job_tid, w2, atexit_ran = one_recycle(shim_env(a.shim, logs), logs)
        events = read_events(logs)
    ends = [e for e in events if e["pid"] == w and e["event"] in ("exit", "exec")]
    if len(ends) != 1 or ends[0]["event"] != "exit":
        fail("expected one exit event from the recycled worker %d" % w, events)
    ev = ends[0]
    check_exit_event(ev, "exit")
    jobs = [t for t in ev["threads"] if t.get("python_name") == "report-job"]
    if len(jobs) != 1:
        fail("the exit event of worker %d should list the thread 'report-job'" % w, [ev])
    t = jobs[0]
    if t["tid"] != job_tid:
        fail("report-job has tid %r, the app saw %d" % (t["tid"], job_tid), [ev])
    if t["state"] != "busy":
        fail("report-job, cut off inside job(), should be busy", [ev])
    if not has_frame(t, APP, "job", line):
        fail("report-job's python_stack should show job() at %s:%d" % (APP, line), [ev])
    if any(x["tid"] == w for x in ev["threads"]):
        fail("the exiting (main) thread of worker %d is listed" % w, [ev])
    print("with the shim: worker %d recycled; its exit event lists report-job (tid %d), busy, in job() "
          "at line %d; %d thread(s) cut off in all" % (w, job_tid, line, ev["threads_total"]))


if __name__ == "__main__":
    main()
