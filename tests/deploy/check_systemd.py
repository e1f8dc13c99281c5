#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The systemd drop-in (examples/systemd/gunicorn.service.d/forksafe.conf, configured with this
# build's paths) on the example gunicorn.service: `systemd-analyze verify` loads both without a
# word (and does read the drop-in: a broken copy is complained about); then the service's
# command runs with the drop-in's Environment= (its LD_PRELOAD pointed at this build's library,
# its journal at a test listener): every request is answered and the workers' reports arrive as
# journal entries.
#   check_systemd.py --dropin build/examples/forksafe.conf --unit examples/systemd/gunicorn.service --shim LIB
import argparse
import os
import re
import shlex
import shutil
import tempfile

from deploylib import APP_DIR, fail, free_port, run, serve_and_query, skip
from journal_listener import Listener, text


def verify(unit_dir, unit):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=unit_dir + ":", SYSTEMD_LOG_COLOR="0")
    return run(["systemd-analyze", "verify", "--man=no", os.path.join(unit_dir, unit)], 120, env=env)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dropin", required=True)
    ap.add_argument("--unit", required=True)
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    if not shutil.which("systemd-analyze"):
        skip("systemd-analyze is not installed (Debian's systemd; scripts/install-deps.sh)")
    tmp = tempfile.mkdtemp(prefix="forksafe-systemd.")
    try:
        units = os.path.join(tmp, "units")
        os.makedirs(os.path.join(units, "gunicorn.service.d"))
        unit_text = open(a.unit).read()
        if not os.access("/usr/bin/gunicorn", os.X_OK):  # verify checks that the command exists
            unit_text = unit_text.replace("/usr/bin/gunicorn", "/bin/sleep")
        open(os.path.join(units, "gunicorn.service"), "w").write(unit_text)
        dropin = os.path.join(units, "gunicorn.service.d", "forksafe.conf")

        shutil.copy(a.dropin, dropin)
        with open(dropin, "a") as f:
            f.write("NoSuchKey=1\n")
        r = verify(units, "gunicorn.service")
        if "forksafe.conf" not in r.stdout + r.stderr or "NoSuchKey" not in r.stdout + r.stderr:
            fail("systemd-analyze verify does not seem to read the drop-in here:\n" + r.stdout + r.stderr)
        shutil.copy(a.dropin, dropin)
        r = verify(units, "gunicorn.service")
        print("systemd-analyze verify: status %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            fail("systemd-analyze verify complains about the unit or the drop-in")

        # what the drop-in sets, as systemd would pass it
        env = {}
        for line in open(a.dropin):
            m = re.match(r"^Environment=(.*)$", line.strip())
            if m:
                for kv in shlex.split(m.group(1)):
                    k, _, v = kv.partition("=")
                    env[k] = v
        if env.get("FORKSAFE_LOG") != "journal" or not env.get("LD_PRELOAD", "").endswith("libforksafe.so.0"):
            fail("the drop-in should set LD_PRELOAD to the library and FORKSAFE_LOG=journal: %s" % env)
        print("drop-in environment: %s" % env)
        if not os.access("/usr/bin/gunicorn", os.X_OK):
            skip("verified; Debian's gunicorn is absent, so the service's command is not run")
        sock = os.path.join(tmp, "journal.socket")
        env.update(LD_PRELOAD=os.path.abspath(a.shim), FORKSAFE_LOG="journal:" + sock)
        base = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
        port = free_port()
        cmd = re.search(r"^ExecStart=(.*)$", unit_text, re.M).group(1)
        cmd = shlex.split(cmd.replace("127.0.0.1:8000", "127.0.0.1:%d" % port).replace("--workers 4", "--workers 2"))
        with Listener(sock) as j:
            answers = serve_and_query(cmd, port, dict(base, **env), os.path.join(tmp, "gunicorn.log"), cwd=APP_DIR)
            if any(s != 200 for s, _ in answers):
                fail("requests failed: %s\n%s" % (answers, open(os.path.join(tmp, "gunicorn.log")).read()))
            # Each worker repairs the RLock at its first request: every worker that answered must
            # report it (which workers gunicorn hands the 10 requests to is up to the kernel).
            served = {int(b.split("from worker ")[1]) for _, b in answers}

            def pids(es, event):
                return {int(text(e, "SYSLOG_PID")) for e in es if text(e, "FORKSAFE_EVENT") == event}
            entries = j.wait(lambda es: len(pids(es, "fork")) >= 2 and served <= pids(es, "lock_repaired"), 30)
            forked, repaired = pids(entries, "fork"), pids(entries, "lock_repaired")
            if j.errors or len(forked) != 2 or not served or not served <= repaired or not repaired <= forked or \
                    any(text(e, "FORKSAFE_OWNER_PYTHON_NAME") != "metrics-flusher"
                        for e in entries if text(e, "FORKSAFE_EVENT") == "lock_repaired"):
                fail("every worker should report its fork, and every worker that answered the repaired RLock of "
                     "metrics-flusher (forked %s, repaired %s, served by %s): %s %s"
                     % (sorted(forked), sorted(repaired), sorted(served), entries, j.errors))
        print("10 of 10 requests answered by workers %s; fork entries from %s, lock_repaired from %s"
              % (sorted(served), sorted(forked), sorted(repaired)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("PASS")


if __name__ == "__main__":
    main()
