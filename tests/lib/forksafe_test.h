// SPDX-License-Identifier: MIT
// The one helper header of the C test programs (tests/repair/scenarios.c, tests/reports/embed.c,
// tests/exit/c_exit.c, tests/output/emitter.c, tests/output/secure_probe.c): CHECK, bounded waits
// for children (pidfd + poll, never sleep-and-hope), pipe barriers, a thread that holds a lock
// until told to let go, where a thread is blocked (/proc/self/task/TID/syscall), and whether the
// shim is loaded. Each program is one translation unit that includes this once (holder_main is
// defined here, exported, so that reports name it).
//
// Everything here may run in a forked child of a multi-threaded process: a failed CHECK writes
// with dprintf (no stdio lock a lost thread could hold) and leaves with _exit (no atexit handlers,
// no stdio flush, no exit report of the shim's).
#ifndef FS_TEST_H
#define FS_TEST_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Fails the program (exit status 1), naming the program, file, line, condition and errno. */
#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            int check_errno_ = errno;                                                             \
            dprintf(2, "%s: %s:%d: check failed: %s (errno %d)\n", program_invocation_short_name, \
                    __FILE__, __LINE__, #cond, check_errno_);                                     \
            _exit(1);                                                                             \
        }                                                                                         \
    } while (0)

static inline int shim_loaded(void) { return dlsym(RTLD_DEFAULT, "forksafe_version") != NULL; }

static inline pid_t gettid_now(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- time ---- */

static inline double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline void sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
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

/* ---- children ---- */

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

/* Waits up to `ms` for `pid` and checks it exited 0; anything else fails the program. */
static inline void wait_child_ok(pid_t pid, int ms) {
    int st = wait_child(pid, ms);
    if (st == -1) {
        dprintf(2, "%s: child %d did not finish within %d ms\n", program_invocation_short_name, (int)pid, ms);
        _exit(1);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        dprintf(2, "%s: child %d ended with status 0x%x\n", program_invocation_short_name, (int)pid, st);
        _exit(1);
    }
}

/* ---- pipes ---- */

/* Reads until `n` bytes have arrived on `fd` (a barrier: each party writes one byte when it is
 * where it should be). End of file before that fails the program. */
static inline void read_tokens(int fd, int n) {
    for (int got = 0; got < n;) {
        char buf[256];
        ssize_t k = read(fd, buf, (size_t)(n - got) < sizeof buf ? (size_t)(n - got) : sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        CHECK(k > 0);
        got += (int)k;
    }
}

/* Reads one byte, retrying on EINTR; returns what read(2) returned (1, 0 at end of file, -1). */
static inline ssize_t read_byte(int fd) {
    char c;
    ssize_t n;
    do n = read(fd, &c, 1); while (n < 0 && errno == EINTR);
    return n;
}

/* ---- a thread that holds a semaphore until told to let go ---- */

struct holder {
    sem_t *sem;
    int ready[2], release[2];
    pthread_t thread;
    pid_t tid;
    char name[16]; /* the thread's name ("" keeps the process's) */
    int prove;     /* take and release it once before taking it for good: a proven lock */
};

/* Takes h->sem (after one take-and-post if h->prove), says so on h->ready, waits for a byte on
 * h->release, posts h->sem. Exported (the programs link with -rdynamic): reports name it. */
__attribute__((noinline)) void *holder_main(void *p);
__attribute__((noinline)) void *holder_main(void *p) {
    struct holder *h = p;
    if (h->name[0]) CHECK(pthread_setname_np(pthread_self(), h->name) == 0);
    h->tid = gettid_now();
    if (h->prove) { /* a complete take-then-post first: the semaphore is a proven lock */
        CHECK(sem_wait(h->sem) == 0);
        CHECK(sem_post(h->sem) == 0);
    }
    CHECK(sem_wait(h->sem) == 0);
    CHECK(write(h->ready[1], "r", 1) == 1);
    CHECK(read_byte(h->release[0]) == 1);
    CHECK(sem_post(h->sem) == 0);
    return NULL;
}

static inline void holder_start_as(struct holder *h, sem_t *sem, const char *name, int prove) {
    h->sem = sem;
    snprintf(h->name, sizeof h->name, "%s", name ? name : "");
    h->prove = prove;
    CHECK(pipe2(h->ready, O_CLOEXEC) == 0 && pipe2(h->release, O_CLOEXEC) == 0);
    CHECK(pthread_create(&h->thread, NULL, holder_main, h) == 0);
    CHECK(read_byte(h->ready[0]) == 1); /* it holds the lock now */
}

/* The holder takes the lock once. */
static inline void holder_start(struct holder *h, sem_t *sem, const char *name) { holder_start_as(h, sem, name, 0); }

/* The holder first takes and releases the lock (wait, post), then takes it and keeps it: one
 * complete take-then-post by one thread, which makes it a proven lock. */
static inline void holder_start_proven(struct holder *h, sem_t *sem, const char *name) {
    holder_start_as(h, sem, name, 1);
}

/* Lets the holder go, joins it, and closes its pipes (a program that lists its descriptors sees
 * only its own). */
static inline void holder_finish(struct holder *h) {
    CHECK(write(h->release[1], "x", 1) == 1);
    CHECK(pthread_join(h->thread, NULL) == 0);
    close(h->ready[0]);
    close(h->ready[1]);
    close(h->release[0]);
    close(h->release[1]);
}

/* ---- where a thread is ---- */

/* The system call thread `tid` of this process is blocked in, from /proc/self/task/TID/syscall:
 * its number (and its first argument in *arg0, if arg0 is not NULL); -1 if the thread is running
 * in user space; -2 if it cannot be read (the thread is gone). */
static inline long task_syscall(pid_t tid, unsigned long *arg0) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (fd >= 0) close(fd);
    if (n <= 0) return -2;
    buf[n] = '\0';
    char *end;
    long nr = strtol(buf, &end, 10);
    if (end == buf) return -1; /* "running" */
    if (arg0) *arg0 = strtoul(end, NULL, 16);
    return nr;
}

/* Waits until thread `tid` is blocked in system call `nr`, on first argument `arg0` if `lo` <
 * `hi` (any address in [lo, hi)). Polls every millisecond: polling only finds a state, no
 * outcome depends on its timing. Returns 1 once seen, 0 as soon as `*stop` is nonzero (the
 * thread will not block there: it went past), -1 after about `ms` without either. */
static inline int wait_in_syscall(pid_t tid, long nr, uintptr_t lo, uintptr_t hi, _Atomic int *stop, int ms) {
    for (int i = 0; i < ms; i++) {
        if (stop && atomic_load(stop)) return 0;
        unsigned long arg0 = 0;
        if (task_syscall(tid, &arg0) == nr && (lo >= hi || (arg0 >= lo && arg0 < hi))) return 1;
        sleep_ms(1);
    }
    return -1;
}

/* Waits until thread `tid` is blocked in futex(2) on the semaphore `s` (glibc's sem_t waits on a
 * word in its first 8 bytes): see wait_in_syscall. */
static inline int wait_blocked_on(pid_t tid, const sem_t *s, _Atomic int *stop, int ms) {
    return wait_in_syscall(tid, SYS_futex, (uintptr_t)s, (uintptr_t)s + 8, stop, ms);
}

/* A wait on `s` that the case expects to time out: returns 1 if it did. */
static inline int times_out(sem_t *s, int ms) {
    struct timespec t = deadline_ms(CLOCK_REALTIME, ms);
    int r;
    do r = sem_timedwait(s, &t); while (r < 0 && errno == EINTR);
    return r < 0 && errno == ETIMEDOUT;
}

#endif
