# SPDX-License-Identifier: MIT
# Stands in for a client library that starts a background thread when it is imported (a metrics
# or monitoring client). The thread is idle in its loop when the program forks.
import threading

_wake = threading.Event()
_running = threading.Event()


def _monitor_loop():
    _running.set()
    _wake.wait()  # MARK:monitor


_thread = threading.Thread(target=_monitor_loop)  # a default name, as libraries often leave it
_thread.daemon = True
_thread.start()
_running.wait()


def stop():
    _wake.set()
    _thread.join()
