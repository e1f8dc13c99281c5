// SPDX-License-Identifier: MIT
// The fork path's mechanism. Start at wrap/fork.c to see what happens when a process forks:
//   1. fork() wrapper: writes any report this process still owes, takes the Python snapshot when
//      the fork comes from C, then calls the real fork.
//   2. prepare handler (runs last), fs_fork_prepare here: the record of the threads about to be
//      lost and of the forking thread.
//   3. child handler (runs first), fs_fork_child here: the forking thread gets its new tid, every
//      other thread's registry slot becomes LOST, and the child is "armed": its blocking waits
//      check for orphaned locks, and it owes a fork report. A single-threaded process whose fork
//      carries green threads (python/green.c) owes one too, without being armed.
//   4. The report is written when the child shows it goes on running (report/fork_report.c): a
//      wait that would block, a repair, pthread_create, fork, exit, or Python's after-fork hook.
//      exec cancels it, so a fork followed directly by exec writes nothing.
// Everything here runs inside fork(): async-signal-safe only.
#include "core.h"
#include "python/python.h"

#include <errno.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern int __libc_single_threaded; /* glibc 2.32+: false once the process ever had a thread */

struct fs_fork_record fs_fork_record;

/* Every write around a fork costs a page fault: in the child (its first write to a page copies
 * it) and in the parent (its pages are copy-on-write until the child is gone). So the fork path
 * writes only what changed, and a single-threaded process's fork writes almost nothing: no lock
 * (no other thread can fork), no record (nothing can be lost). Its mutable state is in fs_proc
 * (state/process.c), on one page. */
#define SINGLE (__libc_single_threaded)

FS_FORK_PATH void fs_fork_lock(void) {
    if (SINGLE) return;
    int expected = 0;
    while (!atomic_compare_exchange_weak(&fs_proc.fork_busy, &expected, 1)) {
        expected = 0;
        syscall(SYS_sched_yield);
    }
}

FS_FORK_PATH static void unlock(void) {
    if (atomic_load_explicit(&fs_proc.fork_busy, memory_order_relaxed)) atomic_store(&fs_proc.fork_busy, 0);
}

FS_FORK_PATH void fs_fork_prepare(void) {
    struct fs_fork_record *r = &fs_fork_record;
    if (fs_proc.fork_recorded) fs_proc.fork_recorded = 0;
    fs_py_prepare(0); /* no Python snapshot, unless this fork is multi-threaded and has one */
    pid_t pid = fs_proc_pid_checked(); /* handlers may run before fs_init */
    if (r->parent_pid != pid) r->parent_pid = pid;
    /* The forking thread's tid, for its locks in the child: a process that never had another
     * thread forks from its main thread, whose tid is its pid. */
    pid_t forker = SINGLE ? pid : fs_gettid();
    if (fs_proc.forker_old_tid != forker) fs_proc.forker_old_tid = forker;
    /* Green threads (gevent, eventlet) the child carries: a single-threaded process reports them. */
    int green = fs_py_green_prepare(forker);
    if (SINGLE && fs_likely(!green)) return;
    if (!SINGLE) fs_self_token(); /* the forking thread keeps a slot: it never needs a new one in the child */
    r->forking_tid = forker;
    if (prctl(PR_GET_NAME, r->forking_name) != 0) r->forking_name[0] = '\0';
    clock_gettime(CLOCK_REALTIME, &r->time);
    if (SINGLE) {
        r->tasks[0] = forker;
        r->ntasks = 1;
    } else {
        r->ntasks = fs_registry_threads_now(r->tasks, FS_MAX_LISTED, r->forking_tid);
    }
    fs_proc.fork_recorded = (r->ntasks > 1 ? FS_FORK_THREADS : 0) | (green ? FS_FORK_GREEN : 0);
    fs_py_prepare(r->forking_tid);
}

FS_FORK_PATH void fs_fork_parent(void) {
    fs_py_parent();
    fs_py_green_parent();
    unlock();
}

FS_FORK_PATH void fs_fork_child(void) {
    fs_tls_tid = fs_sys_gettid();
    fs_proc.pid = fs_sys_getpid();
    fs_proc.fork_seq++;
    fs_proc.single_since_fork = 1;
    fs_proc.forked = 1;
    fs_registry_after_fork_child(fs_fork_record.parent_pid);
    unlock();
    if (fs_proc.fork_recorded) {
        fs_proc.report_owed_pid = fs_proc.pid;
        atomic_store(&fs_proc.report_owed, 1);
        if (fs_proc.fork_recorded & FS_FORK_THREADS) {
            fs_pylock_child_mark();
            atomic_store(&fs_proc.armed, 1);
        }
    }
}
