# SPDX-License-Identifier: MIT
# Helpers for the Python programs under test in tests/exit (py_exit_prog.py, uwsgi_recycle_app.py;
# Python 2.7 and 3.6+), not for the drivers (those use tests/lib/forksafe_test.py): native thread
# ids, and bounded waits until a thread is really where a test wants it before the process ends.
import os
import sys
import threading
import time

_SYS_gettid = {"x86_64": 186, "aarch64": 178, "i686": 224, "i386": 224}


def gettid():
    """The calling thread's native id (what /proc/self/task and the reports show)."""
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(_SYS_gettid[os.uname()[4]])


def wait_until(cond, what, timeout=10.0):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.005)  # polling a condition with a deadline


def task_syscall(tid):
    """First field of /proc/self/task/TID/syscall: 'running', or the number of the system call
    the thread is blocked in."""
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0]
    except (IOError, OSError, IndexError):
        return None


def innermost(ident):
    frame = sys._current_frames().get(ident)
    return frame


def wait_blocked_in(tid, ident, function, files, what, line=None, timeout=10.0):
    """Waits until the thread (native id tid, Python ident) has `function` of a file ending with
    one of `files` as its innermost Python frame (at `line` if given) and is asleep in a system
    call (not running user code)."""
    def ready():
        f = innermost(ident)
        if f is None or f.f_code.co_name != function:
            return False
        if not f.f_code.co_filename.endswith(tuple(files)):
            return False
        if line is not None and f.f_lineno != line:
            return False
        s = task_syscall(tid)
        return s is not None and s != "running" and not s.startswith("-")
    wait_until(ready, what, timeout)
