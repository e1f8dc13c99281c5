// SPDX-License-Identifier: MIT
// Workload 1: uncontended sem_trywait + sem_post on one process-private semaphore initialised to
// 1 (a lock, so the shim tags it and records its owner on every take), in a multi-threaded
// process: one extra thread is started first and stays blocked on a pipe read.
// Prints nanoseconds per trywait+post pair: the fastest of --reps repetitions (and their median).
//   bench_sem_trywait [--quick] [--iters N] [--reps R]
#include "bench_common.h"

#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

static sem_t sem;
static int pipefd[2];

static void *idle_thread(void *arg) {
    (void)arg;
    char c;
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

/* The timed loop; its name starts with timed_ for callgrind's --toggle-collect. */
__attribute__((noinline, used)) void timed_sem_trywait(long n) {
    for (long i = 0; i < n; i++) {
        if (sem_trywait(&sem) != 0) bench_die("sem_trywait", errno);
        sem_post(&sem);
    }
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 1000000, .reps = 7};
    bench_parse(argc, argv, &a, 1000, -1, NULL);
    if (pipe(pipefd) != 0) bench_die("pipe", errno);
    pthread_t idle;
    int e = pthread_create(&idle, NULL, idle_thread, NULL);
    if (e) bench_die("pthread_create", e);
    if (sem_init(&sem, 0, 1) != 0) bench_die("sem_init", errno);

    if (a.warmup) timed_sem_trywait(a.iters / 4 + 1);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a.reps; r++) {
        double t0 = bench_now_ns();
        timed_sem_trywait(a.iters);
        per[r] = (bench_now_ns() - t0) / (double)a.iters;
    }
    bench_report("sem_trywait_post", "ns/pair", per, a.reps, a.iters, "");

    close(pipefd[1]); /* the idle thread reads EOF and ends */
    pthread_join(idle, NULL);
    sem_destroy(&sem);
    return 0;
}
