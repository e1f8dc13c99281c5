# SPDX-License-Identifier: MIT
# A thread leak, for check_thread_leak.py: a pymongo.MongoClient per loop iteration, kept in a
# list, until the process has at least LIMIT threads. No server is needed: with connect=True,
# pymongo 3.11 (Debian's python3-pymongo) starts two daemon threads per client at once, a
# server monitor ("pymongo_server_monitor_thread", which keeps trying 127.0.0.1:1) and a cursor
# reaper ("pymongo_kill_cursors_thread"). Then it closes the clients, waits (bounded) for their
# threads to end, and exits.
#   python3 py_thread_leak.py LIMIT
# Prints: CLIENTS <n> THREADS <live threads at the peak>
from __future__ import print_function

import sys
import threading
import time

import pymongo


def leak(limit):
    clients = []
    while threading.active_count() < limit:
        clients.append(pymongo.MongoClient("mongodb://127.0.0.1:1/", connect=True, serverSelectionTimeoutMS=100))  # MARK:client
    return clients


def main():
    limit = int(sys.argv[1])
    clients = leak(limit)
    print("CLIENTS %d THREADS %d" % (len(clients), threading.active_count()))
    sys.stdout.flush()
    for c in clients:
        c.close()
    deadline = time.time() + 30
    while threading.active_count() > 1:
        if time.time() > deadline:
            raise SystemExit("pymongo threads still alive 30 s after close: %d" % threading.active_count())
        time.sleep(0.05)  # polling a condition with a deadline


if __name__ == "__main__":
    main()
