// SPDX-License-Identifier: MIT
// Semaphores under contention, through whatever sem_* the process links to: with the shim
// preloaded its inline fast paths (core/sem_tag.h) must keep glibc's semantics exactly. Threads
// take a semaphore used as a lock with sem_trywait (spinning a little) or sem_wait, check that
// nobody else is inside, and post it; others wait on it with deadlines. At the end the counts add
// up and the semaphore is free with value 1. A second semaphore initialised to 3 (a counter, not
// a lock) is hammered the same way: never more than 3 inside, value 3 at the end.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define THREADS 6
#define ITERS 100000

static sem_t lock, counter;
static _Atomic int inside_lock, inside_counter, violations;
static _Atomic long busy; /* trywait found it taken: the hammer really contended */
static long total; /* guarded by `lock` */

static void take(sem_t *s, int how) {
    if (how == 0) {
        while (sem_trywait(s) != 0) {
            if (errno != EAGAIN) abort();
            atomic_fetch_add(&busy, 1);
            sched_yield();
        }
    } else if (how == 1) {
        while (sem_wait(s) != 0)
            if (errno != EINTR) abort();
    } else {
        for (;;) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_nsec += 200000;
            if (t.tv_nsec >= 1000000000) t.tv_sec++, t.tv_nsec -= 1000000000;
            if (sem_timedwait(s, &t) == 0) return;
            if (errno != ETIMEDOUT && errno != EINTR) abort();
        }
    }
}

static void *worker(void *p) {
    long id = (long)p;
    for (int i = 0; i < ITERS; i++) {
        int how = (int)((i + id) % 3);
        take(&lock, how);
        if (atomic_fetch_add(&inside_lock, 1) != 0) atomic_fetch_add(&violations, 1);
        total++;
        if (i % 64 == 0) sched_yield(); /* let others queue up and sleep in the kernel */
        atomic_fetch_sub(&inside_lock, 1);
        if (sem_post(&lock) != 0) abort();
        take(&counter, 2 - how);
        if (atomic_fetch_add(&inside_counter, 1) >= 3) atomic_fetch_add(&violations, 1);
        atomic_fetch_sub(&inside_counter, 1);
        if (sem_post(&counter) != 0) abort();
    }
    return NULL;
}

int main(void) {
    if (sem_init(&lock, 0, 1) != 0 || sem_init(&counter, 0, 3) != 0) return 1;
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) return 1;
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    int vl = -1, vc = -1;
    sem_getvalue(&lock, &vl);
    sem_getvalue(&counter, &vc);
    int ok = violations == 0 && total == (long)THREADS * ITERS && vl == 1 && vc == 3 && busy > 0;
    printf("%s: violations %d, total %ld of %ld, lock value %d, counter value %d, contended %ld times\n",
           ok ? "ok" : "FAIL", (int)violations, total, (long)THREADS * ITERS, vl, vc, (long)busy);
    return ok ? 0 : 1;
}
