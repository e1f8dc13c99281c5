# SPDX-License-Identifier: MIT
# Locks the shim must leave alone: correct programs whose child waits on a lock that is taken at
# the fork, or taken again in the child, where a repair would make them wrong.
#
#   python false_repair.py CASE
#
# Each case forks once; the child checks what a program would see, and exits 0 if all is as
# without the shim, 1 otherwise (the reason on stderr). The parent waits for the child at most
# CHILD_DEADLINE seconds, then prints `RESULT ok` or `RESULT failed ...` and exits 0 either way
# (setup problems exit 1). Waits inside the child have timeouts, so a wrong outcome fails fast.
#   forker-holds    the forking thread holds a Lock in `with lock:`; a lost thread was blocked
#                   entering its own `with lock:` (it waits, it does not hold). In the child the
#                   lock stays held -- a new thread's timed wait for it times out -- until the
#                   forking thread leaves its block.
#   signal          a Lock used as a signal: taken by the main thread, to be released by a
#                   worker that is lost at the fork. The child's timed wait must time out.
#   finally-signal  the same signal, released by the worker in a `finally:` (try: work() finally:
#                   done.release()): a finally that releases a Lock does not prove its thread took it.
#   condition-wait  a lost thread waits in Condition.wait() on a Condition over a Lock: it does not
#                   hold that Lock (wait released it), and its waiter lock is a signal only
#                   notify() releases. The child takes the Condition, finds the waiter lock still
#                   taken, and notifies.
#   after-fork      a lost thread held a Lock in `with lock:`; the child releases it itself (a
#                   Lock may be released by any thread), then a new thread of the child takes it.
#                   The main thread's timed wait must time out: the holder now is the new thread.
from __future__ import print_function

import os
import select
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
monotonic = getattr(time, "monotonic", time.time)
CHILD_DEADLINE = 30.0
SETUP_DEADLINE = 10.0
FUTEX = {"x86_64": "202", "aarch64": "98"}.get(os.uname()[4])


def setup_failed(why):
    print("RESULT setup-failed " + why)
    sys.stdout.flush()
    os._exit(1)


def blocked_in_futex(tid):
    """Is thread `tid` of this process waiting in futex(2) (a lock's or a semaphore's wait)?"""
    try:
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0] == FUTEX
    except (IOError, OSError, IndexError):
        return False


def wait_blocked(tid_box):
    """Until the thread whose native id is in tid_box is seen waiting (polling only: no outcome
    depends on it -- a thread not yet waiting at the fork only makes the case weaker)."""
    deadline = monotonic() + SETUP_DEADLINE
    while not tid_box or not blocked_in_futex(tid_box[0]):
        if monotonic() > deadline:
            setup_failed("the thread was not seen waiting")
        time.sleep(0.001)


def native_id():
    return threading.get_native_id() if hasattr(threading, "get_native_id") else None


def start(fn, name):
    t = threading.Thread(target=fn, name=name)
    t.daemon = True
    t.start()
    return t


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def timed_acquire(lock, seconds):
    if sys.version_info[0] < 3:  # no timeout on 2.7: poll, bounded
        deadline = monotonic() + seconds
        while monotonic() < deadline:
            if lock.acquire(False):
                return True
            time.sleep(0.01)
        return False
    return lock.acquire(True, seconds)


def case_forker_holds():
    lock = threading.Lock()
    tid = []

    def enter():
        tid.append(native_id())
        with lock:
            pass

    with lock:
        start(enter, "enterer")
        if FUTEX and native_id() is not None:
            wait_blocked(tid)

        def child():
            expect(lock.locked(), "the forking thread's Lock is not held in the child")
            got = []
            t = start(lambda: got.append(timed_acquire(lock, 0.5)), "child-waiter")
            t.join(10)
            expect(got == [False], "a new thread took the Lock the forking thread holds: %r" % got)
            lock.release()  # what leaving the block does (the child exits before it gets there)
            expect(timed_acquire(lock, 2.0), "the Lock is not free after the forking thread released it")
        return fork_and_check(child)


def signal_case(in_finally):
    """A Lock the main thread took, released by a worker when it has finished (plainly, or in
    its `finally:`). The worker is lost at the fork: the child's timed wait must time out."""
    done = threading.Lock()
    done.acquire()
    go_r, go_w = os.pipe()

    def worker():
        if in_finally:
            try:
                os.read(go_r, 1)
            finally:
                done.release()
        else:
            os.read(go_r, 1)
            done.release()

    start(worker, "worker")

    def child():
        expect(not timed_acquire(done, 0.5), "the signal Lock was handed to the child")
    r = fork_and_check(child)
    os.write(go_w, b"x")
    return r


def waiters(cond):
    return cond._waiters if hasattr(cond, "_waiters") else cond._Condition__waiters  # 2.7: mangled


def case_condition_wait():
    cond = threading.Condition(threading.Lock())
    waiting = []
    tid = []

    def waiter():
        tid.append(native_id())
        with cond:
            waiting.append(True)
            cond.wait(60)

    start(waiter, "cond-waiter")
    deadline = monotonic() + SETUP_DEADLINE
    while True:  # waiting in wait(): the waiter lock is in _waiters, the Condition's lock free
        with cond:
            if waiting and waiters(cond):
                break
        if monotonic() > deadline:
            setup_failed("the waiter did not reach wait()")
        time.sleep(0.001)
    if FUTEX and native_id() is not None:
        wait_blocked(tid)

    def child():
        expect(timed_acquire(cond, 2.0), "the Condition's Lock is taken in the child")
        try:
            waiter_lock = waiters(cond)[0]
            expect(not timed_acquire(waiter_lock, 0.5), "the waiter's signal lock was handed to the child")
            cond.notify()
            expect(timed_acquire(waiter_lock, 0.5), "notify() did not release the waiter lock")
        finally:
            cond.release()
    r = fork_and_check(child)
    with cond:
        cond.notify_all()
    return r


def case_after_fork():
    lock = threading.Lock()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def holder():
        with lock:
            os.write(ready_w, b"r")
            os.read(go_r, 1)

    start(holder, "holder")
    if os.read(ready_r, 1) != b"r":
        setup_failed("holder")

    def child():
        lock.release()  # the child's own release of the lost thread's Lock
        took, let_go = threading.Event(), threading.Event()

        def taker():
            with lock:
                took.set()
                let_go.wait(10)

        t = start(taker, "child-taker")
        expect(took.wait(5), "the child's new thread could not take the released Lock")
        expect(not timed_acquire(lock, 0.5), "the Lock the child's new thread holds was handed over")
        let_go.set()
        t.join(10)
        expect(timed_acquire(lock, 2.0), "the Lock is not free after the new thread left it")
    r = fork_and_check(child)
    os.write(go_w, b"x")
    return r


def fork_and_check(child):
    exit_r, exit_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(exit_r)
        code = 0
        try:
            child()
        except BaseException as e:
            os.write(2, ("child: %s: %s\n" % (type(e).__name__, e)).encode())
            code = 1
        os._exit(code)
    os.close(exit_w)
    ready = select.select([exit_r], [], [], CHILD_DEADLINE)[0]
    if not ready:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        return "failed child-hung"
    status = os.waitpid(pid, 0)[1]
    return "ok" if status == 0 else "failed child-status-%d" % status


CASES = {
    "forker-holds": case_forker_holds,
    "signal": lambda: signal_case(False),
    "finally-signal": lambda: signal_case(True),
    "condition-wait": case_condition_wait,
    "after-fork": case_after_fork,
}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: false_repair.py " + "|".join(sorted(CASES)), file=sys.stderr)
        return 2
    print("RESULT " + CASES[sys.argv[1]]())
    sys.stdout.flush()
    os._exit(0)  # lost-in-the-parent helper threads may still wait: no exit-time joins


if __name__ == "__main__":
    sys.exit(main())
