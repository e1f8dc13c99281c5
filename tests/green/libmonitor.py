# SPDX-License-Identifier: MIT
# A library that, like many client libraries, starts an idle monitor thread when it is imported:
# a daemon thread named "libmonitor-idle" that waits for work that never comes. Safe to lose at a
# fork (it holds nothing): the kind of thread FORKSAFE_ALLOW is for.
import threading

_wake = threading.Event()


def _idle():
    _wake.wait()


_thread = threading.Thread(target=_idle, name="libmonitor-idle", daemon=True)
_thread.start()
