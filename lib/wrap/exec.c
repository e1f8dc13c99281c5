// SPDX-License-Identifier: MIT
// exec and exit: the entry points where a process is replaced or ends. A forked child that execs
// owes no fork report (it is cancelled); one that exits went on running and writes it. Either
// way, threads still alive are cut off: the exit or exec report (report/thread_table.c).
#include "wrap.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

FS_FORK_PATH static void before_exec(const char *path) {
    fs_report_fork_cancel();
    fs_report_exit("exec", path);
}

FS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
    before_exec(path);
    return FS_REAL(execve)(path, argv, envp);
}

FS_EXPORT int execv(const char *path, char *const argv[]) {
    before_exec(path);
    return FS_REAL(execv)(path, argv);
}

FS_EXPORT int execvp(const char *file, char *const argv[]) {
    before_exec(file);
    return FS_REAL(execvp)(file, argv);
}

FS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
    before_exec(file);
    if (!FS_REAL(execvpe)) {
        errno = ENOSYS;
        return -1;
    }
    return fs_real.execvpe(file, argv, envp);
}

FS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
    before_exec("(fexecve)");
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

/* A child that ends without exec went on running: its fork report, then the threads cut off. */
FS_FORK_PATH static void ending(const char *how) {
    fs_report_fork_if_owed();
    fs_report_exit(how, NULL);
}

static void at_exit(void) { ending("exit"); }
void fs_exit_hook_register(void) { atexit(at_exit); }

FS_FORK_PATH FS_EXPORT void _exit(int status) {
    ending("_exit");
    FS_REAL(exit_)(status);
    __builtin_unreachable();
}

FS_FORK_PATH FS_EXPORT void _Exit(int status) {
    ending("_exit");
    FS_REAL(Exit_)(status);
    __builtin_unreachable();
}
