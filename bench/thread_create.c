// SPDX-License-Identifier: MIT
// Workload 3: pthread_create + pthread_join of a thread that returns at once, default attributes
// (glibc reuses cached stacks after the first few).
// Prints microseconds per create+join: the fastest of --reps repetitions (and their median).
//   bench_thread_create [--quick] [--iters N] [--reps R]
#include "bench_common.h"

#include <pthread.h>

static void *nothing(void *arg) { return arg; }

__attribute__((noinline, used)) void timed_thread_create(long n) {
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int e = pthread_create(&t, NULL, nothing, NULL);
        if (e) bench_die("pthread_create", e);
        e = pthread_join(t, NULL);
        if (e) bench_die("pthread_join", e);
    }
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 1000, .reps = 5};
    bench_parse(argc, argv, &a, 20, -1, NULL);
    if (a.warmup) timed_thread_create(a.iters / 10 + 1);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a.reps; r++) {
        double t0 = bench_now_ns();
        timed_thread_create(a.iters);
        per[r] = (bench_now_ns() - t0) / 1e3 / (double)a.iters;
    }
    bench_report("thread_create_join", "us/thread", per, a.reps, a.iters, "");
    return 0;
}
