// SPDX-License-Identifier: MIT
// The fork path. Start here to see what happens when a process forks:
//   1. fork() wrapper: writes any report this process still owes, then calls the real fork.
//   2. prepare handler (runs last): snapshot of the threads that are about to be lost.
//   3. child handler (runs first): the forking thread gets its new tid, every other thread's
//      registry slot becomes LOST, and the child is "armed": its semaphore waits check for
//      orphaned locks, and it owes a fork report.
//   4. The report is written when the child shows it goes on running (see fs_child_report_now):
//      a wait that would block, a repair, pthread_create, fork, exit, or Python's after-fork hook.
//      exec cancels it, so a fork followed directly by exec writes nothing.
// Also here: exit, _exit and exec, where threads still alive are reported (census.c).
// forkpty() and daemon() reach glibc's hidden fork and skip step 1; the handlers still run.
// The handlers run inside fork(): async-signal-safe only, errno preserved.
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

extern void *__dso_handle;
extern int __libc_single_threaded; /* glibc 2.32+: false once the process ever had a thread */

struct fs_fork_snapshot fs_snap;
_Atomic int fs_child_armed;
int fs_tracking = 1;
int fs_single_since_fork;

static _Atomic int snap_busy;       /* one fork at a time owns fs_snap (2.36 runs handlers unlocked) */
static _Atomic int report_pending;  /* this child owes its fork report */
static pid_t pending_pid;           /* ... this child: a vfork child shares our memory */
static int snap_valid;              /* the prepare handler took a snapshot for this fork */

/* ---- the atfork handlers ---- */

static void prepare(void) {
    if (!fs_tracking) return;
    int saved = errno;
    int expected = 0;
    while (!atomic_compare_exchange_weak(&snap_busy, &expected, 1)) {
        expected = 0;
        syscall(SYS_sched_yield);
    }
    /* A child forking again (through forkpty or daemon) before writing its own report. */
    if (atomic_load(&report_pending)) fs_child_report_now();
    snap_valid = 0;
    fs_py_prepare(0); /* no snapshot, unless this fork is multi-threaded and has one */
    fs_snap.parent_pid = fs_getpid_checked(); /* handlers may run before fs_init */
    if (!__libc_single_threaded) {
        fs_snap.forking_tid = fs_gettid();
        clock_gettime(CLOCK_REALTIME, &fs_snap.time);
        fs_snap.ntasks = fs_threads_at_fork(fs_snap.tasks, FS_MAX_SNAPSHOT, fs_snap.forking_tid);
        snap_valid = fs_snap.ntasks > 1;
        fs_py_prepare(fs_snap.forking_tid);
    }
    errno = saved;
}

static void parent(void) {
    if (!fs_tracking) return;
    fs_py_parent();
    atomic_store(&snap_busy, 0);
}

static void child(void) {
    if (!fs_tracking) return;
    int saved = errno;
    fs_tls_tid = (pid_t)syscall(SYS_gettid);
    fs_pid = getpid();
    fs_threads_after_fork_child(fs_snap.parent_pid);
    atomic_store(&snap_busy, 0);
    fs_log_after_fork_child();
    fs_census_after_fork_child();
    fs_single_since_fork = 1;
    if (snap_valid) {
        pending_pid = fs_pid;
        atomic_store(&report_pending, 1);
        atomic_store(&fs_child_armed, 1);
    }
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

/* ---- fork ---- */

FS_EXPORT pid_t fork(void) {
    pid_t (*real)(void) = FS_REAL(fork);
    fs_init();
    if (fs_tracking) { /* FORKSAFE_MODE=off: straight through */
        fs_child_report_now();
        fs_py_before_fork();
    }
    return real();
}

/* ---- the child's report ---- */

void fs_child_report_now(void) {
    if (fs_likely(!atomic_load_explicit(&report_pending, memory_order_relaxed))) return;
    if (getpid() != pending_pid || !atomic_exchange(&report_pending, 0)) return;
    fs_report_fork(&fs_snap, getpid());
}

int fs_child_report_owed(void) {
    return atomic_load_explicit(&report_pending, memory_order_relaxed) && getpid() == pending_pid;
}

void fs_child_report_cancel(void) {
    if (atomic_load(&report_pending) && getpid() == pending_pid) atomic_store(&report_pending, 0);
}

/* ---- exec: the child is replaced, it owes no report ---- */

FS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
    fs_child_report_cancel();
    fs_exit_report("exec", path);
    return FS_REAL(execve)(path, argv, envp);
}

FS_EXPORT int execv(const char *path, char *const argv[]) {
    fs_child_report_cancel();
    fs_exit_report("exec", path);
    return FS_REAL(execv)(path, argv);
}

FS_EXPORT int execvp(const char *file, char *const argv[]) {
    fs_child_report_cancel();
    fs_exit_report("exec", file);
    return FS_REAL(execvp)(file, argv);
}

FS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
    fs_child_report_cancel();
    fs_exit_report("exec", file);
    if (!FS_REAL(execvpe)) {
        errno = ENOSYS;
        return -1;
    }
    return fs_real.execvpe(file, argv, envp);
}

FS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
    fs_child_report_cancel();
    fs_exit_report("exec", "(fexecve)");
    if (!FS_REAL(fexecve)) {
        errno = ENOSYS;
        return -1;
    }
    return fs_real.fexecve(fd, argv, envp);
}

/* execl, execlp, execle: collect the variadic list on the stack, as glibc does. */
#define COLLECT_ARGS(first, ap, argv, extra)                        \
    size_t argc_ = 1;                                               \
    va_start(ap, first);                                            \
    while (va_arg(ap, char *) != NULL) argc_++;                     \
    va_end(ap);                                                     \
    char *argv[argc_ + 1];                                          \
    argv[0] = (char *)(first);                                      \
    va_start(ap, first);                                            \
    for (size_t i_ = 1; i_ <= argc_; i_++) argv[i_] = va_arg(ap, char *); \
    extra;                                                          \
    va_end(ap)

FS_EXPORT int execl(const char *path, const char *arg, ...) {
    va_list ap;
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return execv(path, argv);
}

FS_EXPORT int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    COLLECT_ARGS(arg, ap, argv, (void)0);
    return execvp(file, argv);
}

FS_EXPORT int execle(const char *path, const char *arg, ...) {
    va_list ap;
    char **envp;
    COLLECT_ARGS(arg, ap, argv, envp = va_arg(ap, char **));
    return execve(path, argv, envp);
}

/* ---- exit: a child that ends without exec went on running ---- */

static void at_exit(void) {
    fs_child_report_now();
    fs_exit_report("exit", NULL);
}
void fs_fork_init(void) { atexit(at_exit); }

FS_EXPORT void _exit(int status) {
    fs_child_report_now();
    fs_exit_report("_exit", NULL);
    FS_REAL(exit_)(status);
    __builtin_unreachable();
}

FS_EXPORT void _Exit(int status) {
    fs_child_report_now();
    fs_exit_report("_exit", NULL);
    FS_REAL(Exit_)(status);
    __builtin_unreachable();
}
