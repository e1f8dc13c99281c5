// SPDX-License-Identifier: MIT
// The fork path's entry points. Start here to see what happens when a process forks:
//   1. fork(): writes any report this process still owes, takes the Python snapshot when the
//      fork comes from C (python/hooks.c), then calls the real fork. FORKSAFE_MODE=off: straight
//      through.
//   2. prepare(), our prepare handler (wrap/atfork.c), runs last of all handlers: core/fork.c
//      records the threads about to be lost and the forking thread.
//   3. child(), our child handler (wrap/atfork.c), runs first: core/fork.c gives the forking
//      thread its new tid, marks every other thread LOST, arms the child's blocking waits
//      (wrap/sem.c) and notes that the child owes a fork report.
//   4. The report (report/fork_report.c) is written when the child shows it goes on running: a
//      wait that would block, pthread_create, fork, exit (wrap/exec.c), or Python's after-fork
//      hook (wrap/python_hooks.c). exec cancels it: a fork followed directly by exec writes nothing.
// forkpty() and daemon() reach glibc's hidden fork and skip step 1; the handlers still run.
// The handlers run inside fork(): async-signal-safe only, errno preserved.
#include "wrap.h"

FS_EXPORT pid_t fork(void) {
    fs_real_resolve(); /* everything a child might call, resolved before there is one */
    pid_t (*real)(void) = fs_real.fork;
    fs_init();
    if (fs_proc.tracking) {
        fs_report_fork_if_owed();
        fs_py_before_fork();
    }
    return real();
}
