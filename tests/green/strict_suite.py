# SPDX-License-Identifier: MIT
# A small test suite in pytest style (plain asserts on results; also runs under unittest) whose
# code forks while a library's thread (libmonitor.py) runs. Under FORKSAFE_STRICT=on each child
# that goes on running after such a fork is an error: it exits with status 70 and the tests that
# fork fail, with the report in stderr saying why; with FORKSAFE_ALLOW=libmonitor-* they pass.
# A fork followed by exec (subprocess) is never an error.
#   FORKSAFE_STRICT=on LD_PRELOAD=build/lib/libforksafe.so python3 -m unittest -v strict_suite
#   FORKSAFE_STRICT=on LD_PRELOAD=build/lib/libforksafe.so python3 -m pytest strict_suite.py
import multiprocessing
import os
import subprocess
import time
import unittest

import libmonitor  # noqa: F401  (starts its thread)


def square_sum(n):
    return sum(i * i for i in range(n))


def wait_child(pid, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def test_os_fork_child_finishes():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if square_sum(1000) == 332833500 else 1)
    status = wait_child(pid)
    assert status == 0, "the forked child exited with status %s" % status


def test_multiprocessing_process_finishes():
    p = multiprocessing.get_context("fork").Process(target=square_sum, args=(1000,))
    p.start()
    p.join(60)
    assert p.exitcode == 0, "the worker process exited with status %s" % p.exitcode


def test_subprocess_is_not_an_error():
    assert subprocess.run(["true"]).returncode == 0


class StrictSuite(unittest.TestCase):  # the same tests for unittest
    test_os_fork_child_finishes = staticmethod(test_os_fork_child_finishes)
    test_multiprocessing_process_finishes = staticmethod(test_multiprocessing_process_finishes)
    test_subprocess_is_not_an_error = staticmethod(test_subprocess_is_not_an_error)


if __name__ == "__main__":
    unittest.main()
