// SPDX-License-Identifier: MIT
// Helpers for the C scenarios: a thread that holds a lock until told to let go, bounded waits for
// children (pidfd + poll, never sleep-and-hope), and knowing whether the shim is loaded.
#ifndef FS_TEST_COMMON_H
#define FS_TEST_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", __FILE__, __LINE__, #cond, errno); \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static inline int shim_loaded(void) { return dlsym(RTLD_DEFAULT, "forksafe_version") != NULL; }

/* A thread that takes `sem`, says so through a pipe, then waits until `release_fd` is readable. */
struct holder {
    sem_t *sem;
    int ready[2], release[2];
    pthread_t thread;
    pid_t tid;
    const char *name;
    int prove; /* take and release it once before taking it for good: a proven lock */
};

__attribute__((noinline)) void *holder_main(void *p);

static inline void holder_start_as(struct holder *h, sem_t *sem, const char *name, int prove) {
    h->sem = sem;
    h->name = name;
    h->prove = prove;
    CHECK(pipe2(h->ready, O_CLOEXEC) == 0 && pipe2(h->release, O_CLOEXEC) == 0);
    CHECK(pthread_create(&h->thread, NULL, holder_main, h) == 0);
    char c;
    CHECK(read(h->ready[0], &c, 1) == 1); /* it holds the lock now */
}

/* The holder takes the lock once. */
static inline void holder_start(struct holder *h, sem_t *sem, const char *name) { holder_start_as(h, sem, name, 0); }

/* The holder first takes and releases the lock (wait, post), then takes it and keeps it: one
 * complete take-then-post by one thread, which makes it a proven lock. */
static inline void holder_start_proven(struct holder *h, sem_t *sem, const char *name) {
    holder_start_as(h, sem, name, 1);
}

static inline void holder_finish(struct holder *h) {
    CHECK(write(h->release[1], "x", 1) == 1);
    CHECK(pthread_join(h->thread, NULL) == 0);
}

/* Waits up to `ms` for `pid`. Returns its wait status, or -1 if it was still running (it is
 * killed and reaped then). */
static inline int wait_child(pid_t pid, int ms) {
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    CHECK(pfd >= 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, ms); while (r < 0 && errno == EINTR);
    close(pfd);
    int status;
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static inline struct timespec deadline_ms(clockid_t clock, int ms) {
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

/* A wait on `s` that the case expects to time out: returns 1 if it did. */
static inline int times_out(sem_t *s, int ms) {
    struct timespec t = deadline_ms(CLOCK_REALTIME, ms);
    int r;
    do r = sem_timedwait(s, &t); while (r < 0 && errno == EINTR);
    return r < 0 && errno == ETIMEDOUT;
}

/* The system call thread `tid` of this process is blocked in, and its first argument, from
 * /proc/self/task/TID/syscall. Returns 0, or -1 if the thread is running or unknown. */
static inline int thread_syscall(pid_t tid, long *nr, unsigned long *arg0) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *end;
    *nr = strtol(buf, &end, 10);
    if (end == buf) return -1; /* "running" */
    *arg0 = strtoul(end, NULL, 16);
    return 0;
}

/* Waits until thread `tid` is blocked in system call `nr`, on first argument `arg0` if `lo` <
 * `hi` (any address in [lo, hi)). Polls every millisecond: polling only finds a state, no
 * outcome depends on its timing. Returns 1 once seen, 0 as soon as `*stop` is nonzero (the
 * thread will not block there: it went past), -1 after about `ms` without either. */
static inline int wait_in_syscall(pid_t tid, long nr, uintptr_t lo, uintptr_t hi, _Atomic int *stop, int ms) {
    for (int i = 0; i < ms; i++) {
        if (stop && atomic_load(stop)) return 0;
        long got;
        unsigned long arg0;
        if (thread_syscall(tid, &got, &arg0) == 0 && got == nr && (lo >= hi || (arg0 >= lo && arg0 < hi)))
            return 1;
        struct timespec ms1 = {0, 1000000};
        nanosleep(&ms1, NULL);
    }
    return -1;
}

/* Waits until thread `tid` is blocked in futex(2) on the semaphore `s` (glibc's sem_t waits on a
 * word in its first 8 bytes): see wait_in_syscall. */
static inline int wait_blocked_on(pid_t tid, const sem_t *s, _Atomic int *stop, int ms) {
    return wait_in_syscall(tid, SYS_futex, (uintptr_t)s, (uintptr_t)s + 8, stop, ms);
}

static inline pid_t gettid_now(void) { return (pid_t)syscall(SYS_gettid); }

#endif

