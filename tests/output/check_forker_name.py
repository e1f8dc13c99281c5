#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The fork report names the forking thread as it was named AT THE FORK, not as the child renamed
# itself afterwards.
#
# The pattern: a child's first act is to rename itself -- gunicorn's workers and celery's pool
# processes set their process title, multiprocessing children get "ForkPoolWorker-N"-style names,
# uWSGI names its workers, C servers call prctl(PR_SET_NAME, "worker") -- and the fork report is
# written later (at the child's first lock, thread or exit). The report says which thread of the
# PARENT forked; naming it by the child's new name sends the reader looking for a thread that
# never existed in the parent.
#
# The contract checked: the parent's main thread is named "forker" (pthread_setname_np) when it
# forks while a thread holds a semaphore; the child renames itself "renamed" (through the
# library's pthread_setname_np wrapper, or behind its back with prctl), then takes the semaphore,
# which writes the fork report: JSON forking_thread.name is "forker"; in text the header says
# "from thread PID 'forker'".
#   check_forker_name.py --bin build/tests/output/emitter --shim build/lib/libforksafe.so
import os
import tempfile

from forksafe_test import driver_args, fail, json_lines, lines, pids, read, run_cases, run_ok, shim_env


def main():
    a = driver_args("bin", "shim")
    emitter = a.bin
    tmp = tempfile.TemporaryDirectory()

    def emit(how, fmt):
        log = os.path.join(tmp.name, "%s-%s.log" % (how, fmt))
        r = run_ok([emitter, "rename", how], shim_env(a.shim, FORKSAFE_LOG=log, FORKSAFE_FORMAT=fmt),
                   "emitter rename " + how)
        return read(log), pids(r.out, "PARENT")[0]

    def json_case(how):
        def case():
            data, parent = emit(how, "json")
            forks = [e for e in json_lines(data, "the log") if e["event"] == "fork"]
            if len(forks) != 1:
                fail("expected one fork event", data)
            ft = forks[0]["forking_thread"]
            if ft.get("tid") != parent or ft.get("name") != "forker":
                fail("forking_thread is %r; expected tid %d, name 'forker'" % (ft, parent), data)
            return "forking_thread.name 'forker'"
        return case

    def text_case(how):
        def case():
            data, parent = emit(how, "text")
            header = [ln for ln in lines(data) if b"forked child" in ln]
            if len(header) != 1 or b"from thread %d 'forker'" % parent not in header[0]:
                fail("the header should say \"from thread %d 'forker'\"" % parent, data)
            return "header names 'forker'"
        return case

    run_cases([
        ("JSON, child renamed with pthread_setname_np", json_case("pthread")),
        ("JSON, child renamed with prctl", json_case("prctl")),
        ("text, child renamed with pthread_setname_np", text_case("pthread")),
        ("text, child renamed with prctl", text_case("prctl")),
    ])


if __name__ == "__main__":
    main()
