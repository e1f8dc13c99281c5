# SPDX-License-Identifier: MIT
# A real library's pthread mutex held by a lost thread: SQLite (Debian's libsqlite3, serialized
# mode) holds a connection's mutex -- a recursive pthread mutex -- for the whole of a statement's
# step. A background thread runs a query on a connection it shares with the main thread; the
# query calls a SQL function that blocks (so the thread sits inside sqlite3_step, mutex held)
# when the main thread forks, as a multiprocessing worker or a pre-forking server would. The
# child then uses the connection: every SQLite call enters that mutex.
# Prints RESULT finished / RESULT hung; the child's wait is bounded by --hang-after.
#   python3 sqlite_fork.py [--hang-after SECONDS]
import argparse
import os
import select
import sqlite3
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hang-after", type=float, default=5.0)
    a = ap.parse_args()
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute("create table t(x)")
    conn.execute("insert into t values (1), (2), (3)")
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()

    def blocking_function():
        os.write(ready_w, b"r")   # inside sqlite3_step: the connection's mutex is held
        os.read(release_r, 1)
        return 1

    conn.create_function("wait_here", 0, blocking_function)
    worker = threading.Thread(target=lambda: conn.execute("select wait_here() from t limit 1").fetchall(),
                              name="query-thread", daemon=True)
    worker.start()
    assert os.read(ready_r, 1) == b"r"
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(done_r)
        count = conn.execute("select count(*) from t").fetchone()[0]  # enters the held mutex
        os._exit(0 if count == 3 else 3)
    os.close(done_w)
    ready, _, _ = select.select([done_r], [], [], a.hang_after)   # EOF when the child ends
    if ready:
        _, status = os.waitpid(pid, 0)
        print("RESULT finished" if status == 0 else "RESULT child-failed %d" % status)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("RESULT hung")
    os.write(release_w, b"x")
    worker.join(10)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
