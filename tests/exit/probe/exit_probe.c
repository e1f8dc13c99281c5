/* SPDX-License-Identifier: MIT
 * Research probe, not a test: an LD_PRELOAD library that logs how a process ends. It interposes
 * exit, _exit and _Exit (and registers a destructor) and appends one line per call to the file
 * named by $EXIT_PROBE_LOG: pid, the call, the status, the live thread count (/proc/self/task)
 * and a backtrace. Used to find out how a uWSGI worker ends on --max-requests.
 *   gcc -shared -fPIC -O0 -g -o exit_probe.so exit_probe.c -ldl
 *   EXIT_PROBE_LOG=/tmp/probe.log LD_PRELOAD=./exit_probe.so uwsgi ...
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int count_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    struct dirent *e;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void note(const char *what, int status) {
    const char *path = getenv("EXIT_PROBE_LOG");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "PROBE pid=%d ppid=%d call=%s status=%d threads=%d\n",
                     getpid(), getppid(), what, status, count_threads());
    if (write(fd, buf, n) < 0) {}
    void *frames[64];
    int k = backtrace(frames, 64);
    backtrace_symbols_fd(frames, k, fd);
    close(fd);
}

void exit(int status) {
    static void (*real)(int);
    note("exit", status);
    if (!real) real = (void (*)(int))dlsym(RTLD_NEXT, "exit");
    real(status);
    __builtin_unreachable();
}

void _exit(int status) {
    static void (*real)(int);
    note("_exit", status);
    if (!real) real = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
    real(status);
    __builtin_unreachable();
}

void _Exit(int status) {
    static void (*real)(int);
    note("_Exit", status);
    if (!real) real = (void (*)(int))dlsym(RTLD_NEXT, "_Exit");
    real(status);
    __builtin_unreachable();
}

__attribute__((destructor)) static void fini(void) { note("destructor", -1); }
