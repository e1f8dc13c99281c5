# SPDX-License-Identifier: MIT
# A scenario: "another thread holds a lock at the moment of os.fork(); the child then uses it".
#
#   python held_lock.py KIND [--hang-after SECONDS]
#
# A holder thread takes the lock the way a real program would for KIND, lets the main thread
# know through a pipe (or, for `print`, through /proc) that it surely holds it, and blocks while
# holding it. The main thread forks; the child uses the lock as a program would and exits with
# os._exit(0). The parent waits for the child at most --hang-after seconds (a pipe only the
# child holds reaches EOF when it exits), kills it if it is still running, releases the holder
# and prints one line:
#   RESULT finished            the child completed within the time bound
#   RESULT hung                it did not (it was killed)
# followed by `RESULT child-failed N` if the child exited with status N != 0 (N is -SIG if a
# signal other than our SIGKILL ended it). Setup problems print `RESULT setup-failed ...` and
# exit 1. No sleep decides any outcome. This file runs unchanged on CPython 2.7 and 3.6+.
#
# KINDs: lock (acquire() then try/finally), lock-bare (acquire() ... release(), no try), lock-with, rlock, logging, queue, condition (over an RLock),
# condition-lock (over a Lock), semaphore, print (see the setup_* functions), and token: a
# Lock used as a one-time token, won by a worker with acquire(False) and never released; there the
# child must find it taken (acquire(False) returns False) with or without the shim, and never hang.
from __future__ import print_function

import argparse
import errno
import fcntl
import io
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
import warnings

try:
    import queue
except ImportError:  # Python 2
    import Queue as queue

# 3.12+ warns when a multi-threaded process forks: that is exactly what this scenario does.
warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)

monotonic = getattr(time, "monotonic", time.time)

SETUP_DEADLINE = 10.0  # seconds the holder may take to be seen holding its lock


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def setup_failed(why):
    """Reports a setup problem and leaves at once: the holder may still be blocked holding a
    lock that interpreter shutdown would need."""
    out("RESULT setup-failed " + why)
    sys.stderr.flush()
    os._exit(1)


def retry_eintr(fn, *args):
    """Python 2 and 3.4 do not retry system calls interrupted by a signal (PEP 475)."""
    while True:
        try:
            return fn(*args)
        except (OSError, IOError, select.error) as e:
            if e.args and e.args[0] == errno.EINTR:
                continue
            raise


def read_byte(fd):
    return retry_eintr(os.read, fd, 1)


# ---- the kinds ----
# Each setup_KIND() returns a Scenario: `hold` runs in the holder thread and must not return
# before the main thread released it; `wait_held` runs in the main thread and returns once the
# lock is surely held; `child` runs in the forked child and uses the lock; `release` lets the
# holder go on; `drain_fd` is a descriptor the parent must keep reading while it waits (or None).


class Scenario(object):
    def __init__(self):
        self.ready_r, self.ready_w = os.pipe()      # holder -> main: "I hold it"
        self.release_r, self.release_w = os.pipe()  # main -> holder: "let go"
        self.drain_fd = None

    def signal_ready(self):
        os.write(self.ready_w, b"r")

    def block_until_released(self):
        read_byte(self.release_r)

    def wait_held(self):
        if read_byte(self.ready_r) != b"r":
            setup_failed("holder thread ended before taking the lock")

    def release(self):
        os.write(self.release_w, b"x")

    def drain(self):
        pass

    def close(self):
        for fd in (self.ready_r, self.ready_w, self.release_r, self.release_w):
            os.close(fd)


def hold_in_with(s, ctx):
    """A holder that takes `ctx` in a `with` block and stays inside it until released."""
    def hold():
        with ctx:
            s.signal_ready()
            s.block_until_released()
    return hold


def setup_lock(factory):
    s = Scenario()
    lock = factory()

    def hold():
        lock.acquire()
        try:
            s.signal_ready()
            s.block_until_released()
        finally:
            lock.release()

    def child():
        lock.acquire()
        lock.release()
        lock.acquire()  # a second round: the lock behaves as a free lock again
        lock.release()

    s.hold, s.child = hold, child
    return s


def setup_lock_bare():
    """A Lock taken by a bare acquire() and released later in the same function, with no try:
    on 3.13.1+ nothing shows which thread holds it (a PyMutex has no owner)."""
    s = Scenario()
    lock = threading.Lock()

    def hold():
        lock.acquire()
        s.signal_ready()
        s.block_until_released()
        lock.release()

    def child():
        lock.acquire()
        lock.release()

    s.hold, s.child = hold, child
    return s


def setup_lock_with():
    """A Lock held in a `with` block, the commonest way (3.13.1+: proven held from the frame)."""
    s = Scenario()
    lock = threading.Lock()

    hold = hold_in_with(s, lock)

    def child():
        with lock:
            pass
        with lock:  # a second round: the lock behaves as a free lock again
            pass

    s.hold, s.child = hold, child
    return s


def setup_condition_lock():
    """A Condition over a plain Lock, held in `with cond:`."""
    s = Scenario()
    cond = threading.Condition(threading.Lock())

    hold = hold_in_with(s, cond)

    def child():
        with cond:
            cond.notify_all()
        if not cond.acquire(False):
            raise AssertionError("the Condition's Lock is still taken after the child released it")
        cond.release()

    s.hold, s.child = hold, child
    return s


def setup_semaphore():
    """threading.Semaphore's Condition (a plain Lock) held by a thread inside Semaphore.release(),
    the moment a fork can catch a worker handing back a slot. The holder gets there for real: its
    release() calls the Condition's notify(), which this scenario replaces for that one call
    with a wait for the main thread (the Condition's lock is held throughout)."""
    s = Scenario()
    sem = threading.Semaphore(1)
    sem.acquire()
    cond = getattr(sem, "_cond", None) or sem._Semaphore__cond  # 2.7: a name-mangled attribute
    plain_notify = cond.notify

    def notify_and_block(n=1):
        cond.notify = plain_notify
        s.signal_ready()
        s.block_until_released()
        plain_notify(n)

    def hold():
        cond.notify = notify_and_block
        sem.release()

    def child():
        sem.acquire()  # the slot was handed back before the fork
        sem.release()

    s.hold, s.child = hold, child
    return s


def setup_token():
    """A Lock used as a one-time token ("whoever wins does the job, once"): a worker wins
    acquire(False) and never releases it. The token is spent, not a lock held by a lost thread:
    in the child, acquire(False) must return False exactly as without the shim (a non-blocking
    acquire is sem_trywait, which never repairs). Positional False: 2.7 takes no keyword."""
    s = Scenario()
    lock = threading.Lock()

    def hold():
        if not lock.acquire(False):
            setup_failed("the worker did not win the token")
        s.signal_ready()
        s.block_until_released()  # and never releases the lock: the token is spent

    def child():
        if lock.acquire(False):
            raise AssertionError("acquire(False) returned True: the spent token was handed to the child")

    s.hold, s.child = hold, child
    return s


def setup_condition():
    s = Scenario()
    cond = threading.Condition()  # an RLock underneath

    hold = hold_in_with(s, cond)

    def child():
        with cond:
            cond.notify_all()

    s.hold, s.child = hold, child
    return s


def setup_queue():
    s = Scenario()
    q = queue.Queue()

    hold = hold_in_with(s, q.mutex)  # as put()/get() do while they touch the queue

    def child():
        q.put(1)
        if q.get() != 1:
            raise AssertionError("queue returned something else")

    s.hold, s.child = hold, child
    return s


class BlockingStream(object):
    """A log stream whose first write() from the holder thread blocks, right after telling the
    main thread that it is inside write() -- so inside Handler.handle(), with the handler's lock
    held. Every other write is stored."""

    def __init__(self, scenario):
        self.scenario = scenario
        self.block_ident = None
        self.lines = []

    def write(self, text):
        if self.block_ident is not None and self.block_ident == get_ident():
            # Once only: 3.6 and older write the message and the terminator in two calls.
            self.block_ident = None
            self.scenario.signal_ready()
            self.scenario.block_until_released()
        self.lines.append(text)

    def flush(self):
        pass


def get_ident():
    return threading.current_thread().ident


def setup_logging():
    s = Scenario()
    stream = BlockingStream(s)
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("held_lock")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.addHandler(handler)

    def hold():
        stream.block_ident = get_ident()
        logger.warning("from thread")

    def child():
        logger.warning("from child")
        if not any("from child" in line for line in stream.lines):
            raise AssertionError("the child's record was not written: %r" % (stream.lines,))

    s.hold, s.child = hold, child
    return s


# /proc/TID/syscall gives the number of the system call a thread is blocked in.
SYSCALLS = {  # machine: (write, gettid)
    "x86_64": (1, 186),
    "aarch64": (64, 178),
    "i686": (4, 224), "i386": (4, 224),
}


def native_tid():
    if hasattr(threading, "get_native_id"):  # 3.8+
        return threading.get_native_id()
    import ctypes
    gettid = SYSCALLS.get(os.uname()[4], (None, None))[1]
    if gettid is None:
        raise RuntimeError("do not know gettid on " + os.uname()[4])
    return ctypes.CDLL(None, use_errno=True).syscall(gettid)


def setup_print():
    """A buffered writer whose holder thread is blocked in write(2) on a full pipe, holding the
    writer's internal lock (io.BufferedWriter's, also on 2.7, where print itself would use C
    stdio instead)."""
    s = Scenario()
    r, w = os.pipe()
    # Fill the pipe so that the holder's first write(2) blocks. O_NONBLOCK belongs to the open
    # file description, so it is set for the filling only and cleared again.
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    chunk = b"f" * 65536
    while True:
        try:
            os.write(w, chunk)
        except (OSError, IOError) as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                # The pipe may still take a partial page: fill byte by byte to the brim.
                try:
                    while True:
                        os.write(w, b"f")
                except (OSError, IOError) as e2:
                    if e2.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        raise
                break
            raise
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    writer = io.open(w, "wb", buffering=8192, closefd=False)
    big = b"h" * (4 * 65536)  # larger than the buffer: written straight through to the pipe
    tid_box = []
    write_nr = SYSCALLS.get(os.uname()[4], (None, None))[0]
    if write_nr is None:
        setup_failed("do not know the write syscall number on " + os.uname()[4])

    def hold():
        tid_box.append(native_tid())
        s.signal_ready()
        writer.write(big)  # blocks in write(2), holding the writer's lock, until drained
        writer.flush()

    def wait_held():
        # The holder may still be inside its write(2) to the ready pipe, so the check is for a
        # write to `w` in particular.
        Scenario.wait_held(s)
        path = "/proc/self/task/%d/syscall" % tid_box[0]
        deadline = monotonic() + SETUP_DEADLINE
        while True:
            try:
                with open(path) as f:
                    fields = f.read().split()
            except (IOError, OSError):
                fields = []
            if len(fields) >= 2 and fields[0] == str(write_nr) and int(fields[1], 16) == w:
                return
            if monotonic() > deadline:
                setup_failed("holder thread not seen blocked in write(2): %r" % (fields,))
            time.sleep(0.001)  # polling only: no outcome depends on this

    def child():
        writer.write(b"child\n")
        writer.flush()

    def drain():
        try:
            os.read(r, 65536)
        except (OSError, IOError) as e:
            if e.errno not in (errno.EAGAIN, errno.EINTR):
                raise

    def release():
        pass  # draining the pipe is what lets the holder go on

    def close():
        Scenario.close(s)
        writer.close()
        os.close(w)
        os.close(r)

    s.hold, s.child, s.wait_held, s.drain, s.release, s.close = hold, child, wait_held, drain, release, close
    s.drain_fd = r
    return s


KINDS = {
    "lock": lambda: setup_lock(threading.Lock),
    "rlock": lambda: setup_lock(threading.RLock),
    "lock-bare": setup_lock_bare,
    "lock-with": setup_lock_with,
    "condition": setup_condition,
    "condition-lock": setup_condition_lock,
    "semaphore": setup_semaphore,
    "queue": setup_queue,
    "logging": setup_logging,
    "print": setup_print,
    "token": setup_token,
}


# ---- the fork and the bounded wait ----

def run_child(scenario):
    """In the forked child: use the lock, then leave without running any exit handlers."""
    code = 0
    try:
        scenario.child()
    except BaseException:
        # Straight to the descriptor: sys.stderr's own lock is no business of this test.
        os.write(2, ("child: " + traceback.format_exc()).encode("utf-8", "replace"))
        code = 1
    os._exit(code)


def wait_for_child(pid, exit_r, scenario, timeout):
    """Waits until the child exits or `timeout` seconds pass, draining the scenario's pipe
    meanwhile. Returns the wait status, or None if the child had to be killed."""
    deadline = monotonic() + timeout
    fds = [exit_r] + ([scenario.drain_fd] if scenario.drain_fd is not None else [])
    exited = False
    while not exited:
        left = deadline - monotonic()
        if left <= 0:
            break
        readable = retry_eintr(select.select, fds, [], [], left)[0]
        if scenario.drain_fd in readable:
            scenario.drain()
        if exit_r in readable:
            exited = retry_eintr(os.read, exit_r, 1) == b""  # EOF: the child is gone
    if not exited:
        os.kill(pid, signal.SIGKILL)
        retry_eintr(os.waitpid, pid, 0)
        return None
    return retry_eintr(os.waitpid, pid, 0)[1]


def wait_for_holder(holder, scenario):
    """Lets the holder finish (it may need its pipe drained to do so) and joins it."""
    scenario.release()
    deadline = monotonic() + SETUP_DEADLINE
    while holder.is_alive():
        if monotonic() > deadline:
            setup_failed("holder thread did not finish")
        if scenario.drain_fd is not None:
            if retry_eintr(select.select, [scenario.drain_fd], [], [], 0.05)[0]:
                scenario.drain()
        holder.join(0.05)


def main():
    parser = argparse.ArgumentParser(description="fork while another thread holds a lock")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--hang-after", type=float, default=2.0, metavar="SECONDS",
                        help="declare the child hung after this long (default: 2.0)")
    args = parser.parse_args()

    scenario = KINDS[args.kind]()
    holder = threading.Thread(target=scenario.hold, name="holder")
    holder.daemon = True
    holder.start()
    scenario.wait_held()

    exit_r, exit_w = os.pipe()  # only the child keeps the write end: EOF when it exits
    pid = os.fork()
    if pid == 0:
        os.close(exit_r)
        run_child(scenario)  # never returns
    os.close(exit_w)
    status = wait_for_child(pid, exit_r, scenario, args.hang_after)
    os.close(exit_r)

    wait_for_holder(holder, scenario)
    scenario.close()

    if status is None:
        out("RESULT hung")
        return 0
    out("RESULT finished")
    if os.WIFSIGNALED(status):
        out("RESULT child-failed %d" % -os.WTERMSIG(status))
    elif os.WEXITSTATUS(status) != 0:
        out("RESULT child-failed %d" % os.WEXITSTATUS(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
