#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# FORKSAFE_LOG=journal:SOCKET against a listener that parses the native protocol as journald does
# (journal_listener.py): a Python child that loses a thread holding a lock writes a `fork` entry
# and a `lock_repaired` entry, each with MESSAGE (the text report without prefixes), PRIORITY,
# SYSLOG_IDENTIFIER=forksafe, FORKSAFE_JSON and the flattened FORKSAFE_* fields (a thread name
# with a newline travels as a binary field); the child holds no journal descriptor afterwards;
# a fork report too large for a datagram arrives through a sealed memfd; with no journal, one
# warning and the reports on stderr.
#   check_journal.py --forksafe FORKSAFE --shim LIB --many-threads PROG
import argparse
import json
import os
import shutil
import sys
import tempfile

from deploylib import end_checks, expect, run
from journal_listener import Listener, text


# The parent's thread holds an RLock (repaired on every CPython) when the main thread forks. The
# child takes the lock (repaired), then lists its descriptors: no socket of ours may be left.
PROG = r'''
import os, sys, threading
lock = threading.RLock()
held = threading.Event()
def hold():
    with lock:
        held.set()
        threading.Event().wait()
threading.Thread(target=hold, name="flush\nme", daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    with lock:
        pass
    socks = []
    for f in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + f).startswith("socket:"):
                socks.append(f)
        except OSError:
            pass  # the directory's own descriptor, closed by now
    sys.stdout.write("child %d sockets %d\n" % (os.getpid(), len(socks)))
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("parent %d child %d status %d" % (os.getpid(), pid, status))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forksafe", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--many-threads", required=True)
    ap.add_argument("--journal-send", required=True)
    a = ap.parse_args()
    fs, shim = os.path.abspath(a.forksafe), os.path.abspath(a.shim)
    base = {k: v for k, v in os.environ.items() if not (k.startswith("FORKSAFE_") or k == "LD_PRELOAD")}
    env = dict(base, FORKSAFE_LIBRARY=shim)
    py = shutil.which("python3") or sys.executable
    tmp = tempfile.mkdtemp(prefix="forksafe-journal.")
    try:
        sock = os.path.join(tmp, "journal.socket")
        with Listener(sock) as j:
            r = run([fs, "--log=journal:" + sock, py, "-c", PROG], 60, env=env)
            expect(r.returncode == 0 and "status 0" in r.stdout, "the child finishes", r.stdout + r.stderr)
            expect("forksafe[" not in r.stderr, "nothing on stderr", r.stderr)
            entries = j.wait(lambda es: len(es) >= 2, 30)
            expect(not j.errors, "every datagram parses as the native protocol", j.errors)
            ev = {text(e, "FORKSAFE_EVENT"): e for e in entries}
            expect(set(ev) == {"fork", "lock_repaired"}, "a fork entry and a lock_repaired entry", list(ev))
            child = int(r.stdout.split("child ")[1].split()[0]) if "child " in r.stdout else -1
            parent = int(r.stdout.split("parent ")[1].split()[0]) if "parent " in r.stdout else -1
            fk, lk = ev.get("fork", {}), ev.get("lock_repaired", {})
            for name, e in (("fork", fk), ("lock_repaired", lk)):
                expect(text(e, "SYSLOG_IDENTIFIER") == "forksafe", name + ": SYSLOG_IDENTIFIER=forksafe", e)
                expect(text(e, "SYSLOG_PID") == str(child), name + ": SYSLOG_PID is the child", e)
                try:
                    js = json.loads(text(e, "FORKSAFE_JSON") or "")
                except ValueError as err:
                    js = {"error": str(err)}
                expect(js.get("event") == name and js.get("pid") == child, name + ": FORKSAFE_JSON is the event", js)
                msg = text(e, "MESSAGE") or ""
                expect(msg and "forksafe[" not in msg and not msg.endswith("\n"),
                       name + ": MESSAGE is the text report without prefixes", msg)
                expect(text(e, "FORKSAFE_TIME") == js.get("time") and text(e, "FORKSAFE_PID") == str(child),
                       name + ": FORKSAFE_TIME, FORKSAFE_PID", e)
            expect(text(fk, "PRIORITY") == "4" and text(lk, "PRIORITY") == "5",
                   "PRIORITY: 4 (warning) for the fork, 5 (notice) for the repair",
                   (text(fk, "PRIORITY"), text(lk, "PRIORITY")))
            msg = text(fk, "MESSAGE") or ""
            expect(msg.startswith("process %d forked child %d" % (parent, child)) and "\n" in msg
                   and "lost thread" in msg and "'flush\\x0ame'" in msg,
                   "fork MESSAGE: the text report's lines, names escaped as in text", msg)
            expect(text(fk, "FORKSAFE_PARENT_PID") == str(parent) and text(fk, "FORKSAFE_CHILD_PID") == str(child)
                   and text(fk, "FORKSAFE_LOST_THREADS_TOTAL") == "1" and fk.get("FORKSAFE_LOST_THREADS_TID")
                   and text(fk, "FORKSAFE_FORKING_THREAD_TID") == str(parent)
                   and text(fk, "FORKSAFE_FORKING_THREAD_PYTHON_NAME") == "MainThread",
                   "fork fields: parent, child, lost threads, forking thread", fk)
            expect(text(fk, "FORKSAFE_LOST_THREADS_PYTHON_NAME") == "flush\nme",
                   "a value with a newline arrives whole (binary field)", fk.get("FORKSAFE_LOST_THREADS_PYTHON_NAME"))
            expect(text(lk, "FORKSAFE_TYPE") == "semaphore" and (text(lk, "FORKSAFE_LOCK") or "").startswith("0x")
                   and text(lk, "FORKSAFE_OWNER_PYTHON_NAME") == "flush\nme" and text(lk, "FORKSAFE_TID") == str(child),
                   "lock_repaired fields: lock, type, owner, taker", lk)
            expect("sockets 0" in r.stdout, "no journal socket left open in the child", r.stdout)

            # FORKSAFE_VERBOSE: the settings, as one info entry
            before = len(j.entries)
            r = run([fs, "--log=journal:" + sock, "--verbose", "--mode=report", "true"], 60, env=env)
            got = j.wait(lambda es: len(es) > before, 30)
            e = got[before] if len(got) > before else {}
            expect(r.returncode == 0 and text(e, "FORKSAFE_EVENT") == "settings" and text(e, "PRIORITY") == "6"
                   and "setting FORKSAFE_MODE=report (from the environment)" in (text(e, "MESSAGE") or ""),
                   "FORKSAFE_VERBOSE: the settings as one entry (info)", e)

            # A report too large for one datagram: through a memfd.
            before = len(j.entries)
            r = run([fs, "--log=journal:" + sock, "--threads-warn=0", os.path.abspath(a.many_threads), "3000"], 120,
                    env=env)
            expect(r.returncode == 0, "3000 threads, fork", r.stdout + r.stderr)
            forks = lambda es: [e for e in es[before:] if text(e, "FORKSAFE_EVENT") == "fork"]  # noqa: E731
            found = forks(j.wait(lambda es: forks(es), 60))
            big = found[0] if found else {}
            expect(text(big, "FORKSAFE_LOST_THREADS_TOTAL") == "3000",
                   "a 3000-thread fork report arrives whole (%s)" % ("memfd" if j.memfds else "one datagram"),
                   sorted(big)[:20])
            expect(len(big.get("FORKSAFE_LOST_THREADS_TID", [])) == 64 and len(big) < 1024,
                   "lists flattened to 64 items; fewer than 1024 fields (journald's limit)",
                   len(big.get("FORKSAFE_LOST_THREADS_TID", [])))
            try:
                bj = json.loads(text(big, "FORKSAFE_JSON") or "")
            except ValueError:
                bj = {}
            expect(bj.get("lost_threads_total") == 3000, "FORKSAFE_JSON whole in the large entry", str(bj)[:200])
            # An entry larger than any socket buffer (SO_SNDBUF is capped at twice net.core.wmem_max,
            # 8 MiB at most here): EMSGSIZE, then a sealed memfd.
            before, memfds = len(j.entries), j.memfds
            size = 2 * int(open("/proc/sys/net/core/wmem_max").read()) + (1 << 20)
            r = run([os.path.abspath(a.journal_send), sock, str(size)], 120)
            got = j.wait(lambda es: len(es) > before, 60)
            e = got[before] if len(got) > before else {}
            msg = text(e, "MESSAGE") or ""
            expect(r.stdout.strip() == "sent" and j.memfds == memfds + 1 and msg.startswith("big\n")
                   and len(msg) == 4 + size and len(text(e, "FORKSAFE_NAME") or "") == size,
                   "an entry of %d MiB goes through a sealed memfd, whole" % (size >> 20),
                   "%s memfds %d->%d len %d" % (r.stdout + r.stderr, memfds, j.memfds, len(msg)))
            expect(not j.errors, "no protocol errors", j.errors)

        # No journal: one warning, then the reports on stderr (text), for every event.
        r = run([fs, "--log=journal:" + os.path.join(tmp, "absent.socket"), py, "-c", PROG], 60, env=env)
        warns = [l for l in r.stderr.splitlines() if "warning" in l]
        expect(r.returncode == 0 and len(warns) == 1 and "journal" in warns[0], "no journal: exactly one warning",
               r.stderr)
        expect("forked child" in r.stderr and "repaired" in r.stderr, "no journal: the reports go to stderr", r.stderr)
        r = run([fs, "--log=journal:" + os.path.join(tmp, "absent.socket"), "--json", py, "-c", PROG], 60, env=env)
        lines = [l for l in r.stderr.splitlines() if l.startswith("{")]
        expect(len(lines) == 2 and all(json.loads(l)["event"] for l in lines),
               "no journal, FORKSAFE_FORMAT=json: JSON lines on stderr", r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    end_checks()
    print("PASS")


if __name__ == "__main__":
    main()
