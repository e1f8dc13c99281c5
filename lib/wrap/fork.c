// SPDX-License-Identifier: MIT
// The fork path's entry points. Start here to see what happens when a process forks:
//   1. fork(): writes any report this process still owes, takes the Python snapshot when the
//      fork comes from C (python/hooks.c), then calls the real fork. FORKSAFE_MODE=off: straight
//      through.
//   2. prepare(), our prepare handler, runs last of all handlers: core/fork.c records the threads
//      about to be lost and the forking thread.
//   3. child(), our child handler, runs first: core/fork.c gives the forking thread its new tid,
//      marks every other thread LOST, arms the child's blocking waits (wrap/sem.c) and notes that
//      the child owes a fork report.
//   4. The report (report/fork_report.c) is written when the child shows it goes on running: a
//      wait that would block, pthread_create, fork, exit (wrap/exec.c), or Python's after-fork
//      hook (wrap/python_hooks.c). exec cancels it: a fork followed directly by exec writes nothing.
// forkpty() and daemon() reach glibc's hidden fork and skip step 1; the handlers still run.
// The handlers run inside fork(): async-signal-safe only, errno preserved.
#include "wrap.h"

#include <errno.h>

extern void *__dso_handle;

static void prepare(void) {
    if (!fs_proc.tracking) return;
    int saved = errno;
    fs_fork_lock();
    fs_report_fork_if_owed(); /* a child forking again (forkpty, daemon) before writing its own */
    fs_fork_prepare();
    errno = saved;
}

static void parent(void) {
    if (fs_proc.tracking) fs_fork_parent();
}

static void child(void) {
    if (!fs_proc.tracking) return;
    int saved = errno;
    fs_fork_child();
    fs_report_threads_after_fork_child();
    errno = saved;
}

/* Our handlers must be the oldest registered: prepare handlers run newest first, child handlers
 * oldest first. A library loaded before us (DT_NEEDED) may register from its constructor before
 * ours runs, so the first registration by anyone goes through here and puts ours first. */
void fs_atfork_register(void) {
    static _Atomic int done;
    int expected = 0;
    if (atomic_load_explicit(&done, memory_order_acquire) || !atomic_compare_exchange_strong(&done, &expected, 1))
        return;
    FS_REAL(register_atfork)(prepare, parent, child, &__dso_handle);
}

/* pthread_atfork in programs built against glibc 2.28+ comes from libc_nonshared.a and calls
 * this through the PLT; older programs call libc's pthread_atfork, which we also wrap. */
FS_EXPORT int __register_atfork(void (*pre)(void), void (*par)(void), void (*chi)(void), void *dso) {
    fs_atfork_register();
    return FS_REAL(register_atfork)(pre, par, chi, dso);
}

FS_EXPORT int pthread_atfork(void (*pre)(void), void (*par)(void), void (*chi)(void)) {
    return __register_atfork(pre, par, chi, &__dso_handle);
}

FS_EXPORT pid_t fork(void) {
    pid_t (*real)(void) = FS_REAL(fork);
    fs_init();
    if (fs_proc.tracking) {
        fs_report_fork_if_owed();
        fs_py_before_fork();
    }
    return real();
}
