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
};

__attribute__((noinline)) void *holder_main(void *p);

static inline void holder_start(struct holder *h, sem_t *sem, const char *name) {
    h->sem = sem;
    h->name = name;
    CHECK(pipe2(h->ready, O_CLOEXEC) == 0 && pipe2(h->release, O_CLOEXEC) == 0);
    CHECK(pthread_create(&h->thread, NULL, holder_main, h) == 0);
    char c;
    CHECK(read(h->ready[0], &c, 1) == 1); /* it holds the lock now */
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

#endif
