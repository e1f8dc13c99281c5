// SPDX-License-Identifier: MIT
// Workload 2: two threads hand control back and forth with two semaphores and sem_wait/sem_post
// (A waits on `ping` and posts `pong`, B the reverse). Both semaphores are created as locks
// (sem_init value 1, so the shim tags them) and then taken once, so every wait and post goes
// through the shim's full owner-tracking path -- its worst case for this pattern.
// Prints nanoseconds per hand-off (one post that wakes the other thread's wait): the fastest of
// --reps repetitions (and their median).
//   bench_sem_pingpong [--quick] [--iters ROUNDS] [--reps R]     (a round is 2 hand-offs)
#include "bench_common.h"

#include <pthread.h>
#include <semaphore.h>

static sem_t ping, pong;
static long rounds_total;

__attribute__((noinline, used)) void timed_pingpong_peer(long n) {
    for (long i = 0; i < n; i++) {
        while (sem_wait(&ping) != 0) if (errno != EINTR) bench_die("sem_wait", errno);
        sem_post(&pong);
    }
}

static void *peer(void *arg) {
    (void)arg;
    timed_pingpong_peer(rounds_total);
    return NULL;
}

__attribute__((noinline, used)) void timed_pingpong_main(long n) {
    for (long i = 0; i < n; i++) {
        sem_post(&ping);
        while (sem_wait(&pong) != 0) if (errno != EINTR) bench_die("sem_wait", errno);
    }
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 10000, .reps = 5};
    bench_parse(argc, argv, &a, 200, -1, NULL);
    long warm = a.warmup ? a.iters / 10 + 1 : 0;
    rounds_total = warm + a.iters * a.reps;
    if (sem_init(&ping, 0, 1) != 0 || sem_init(&pong, 0, 1) != 0) bench_die("sem_init", errno);
    if (sem_trywait(&ping) != 0 || sem_trywait(&pong) != 0) bench_die("sem_trywait", errno);

    pthread_t t;
    int e = pthread_create(&t, NULL, peer, NULL);
    if (e) bench_die("pthread_create", e);
    if (warm) timed_pingpong_main(warm);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a.reps; r++) {
        double t0 = bench_now_ns();
        timed_pingpong_main(a.iters);
        per[r] = (bench_now_ns() - t0) / (2.0 * (double)a.iters);
    }
    pthread_join(t, NULL);
    bench_report("sem_pingpong", "ns/handoff", per, a.reps, a.iters, "");
    sem_destroy(&ping);
    sem_destroy(&pong);
    return 0;
}
