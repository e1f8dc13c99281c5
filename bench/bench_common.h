// SPDX-License-Identifier: MIT
// Shared helpers for the C micro-benchmarks: command-line parsing (--quick, --iters, --reps,
// --threads), a monotonic clock, and the one-line JSON result that bench/run.py reads: "value" is
// the fastest of the timed repetitions (also printed: their median, min and max). Every benchmark runs its timed loop in a function whose name starts with
// `timed_`, so `valgrind --tool=callgrind --toggle-collect='timed_*'` counts the loop only.
#ifndef FORKSAFE_BENCH_COMMON_H
#define FORKSAFE_BENCH_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_REPS 64

struct bench_args {
    long iters;    /* operations per repetition */
    int reps;      /* timed repetitions; the fastest is reported as the value */
    long threads;  /* benchmark-specific count (idle threads, ...) */
    int warmup;    /* run one untimed repetition first */
    int quick;
    const char *mode; /* first positional argument, if any */
};

__attribute__((unused)) static void bench_usage(const char *prog, const char *extra) {
    fprintf(stderr,
            "usage: %s [--quick] [--iters N] [--reps R] [--threads T] [--no-warmup]%s%s\n"
            "  --quick      tiny run (a build/smoke check), exits 0 on success\n"
            "  --iters N    operations per timed repetition\n"
            "  --reps R     timed repetitions (the fastest is reported, at most %d)\n",
            prog, extra ? " " : "", extra ? extra : "", BENCH_MAX_REPS);
    exit(2);
}

__attribute__((unused)) static long bench_long(const char *prog, const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0) {
        fprintf(stderr, "%s: bad number '%s'\n", prog, s);
        exit(2);
    }
    return v;
}

/* Defaults in *a are kept unless overridden; --quick sets iters/reps/threads to the quick_* values. */
__attribute__((unused)) static void bench_parse(int argc, char **argv, struct bench_args *a, long quick_iters, long quick_threads,
                        const char *extra_usage) {
    long iters = -1, threads = -1, reps = -1;
    a->warmup = 1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--quick")) a->quick = 1;
        else if (!strcmp(s, "--no-warmup")) a->warmup = 0;
        else if (!strcmp(s, "--iters") && i + 1 < argc) iters = bench_long(argv[0], argv[++i]);
        else if (!strcmp(s, "--reps") && i + 1 < argc) reps = bench_long(argv[0], argv[++i]);
        else if (!strcmp(s, "--threads") && i + 1 < argc) threads = bench_long(argv[0], argv[++i]);
        else if (s[0] != '-' && !a->mode) a->mode = s;
        else bench_usage(argv[0], extra_usage);
    }
    if (a->quick) {
        a->iters = quick_iters;
        a->reps = 1;
        if (quick_threads >= 0) a->threads = quick_threads;
    }
    if (iters >= 0) a->iters = iters;
    if (reps >= 0) a->reps = (int)reps;
    if (threads >= 0) a->threads = threads;
    if (a->reps < 1) a->reps = 1;
    if (a->reps > BENCH_MAX_REPS) a->reps = BENCH_MAX_REPS;
    if (a->iters < 1) a->iters = 1;
}

static inline double bench_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

__attribute__((unused)) static int bench_cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

__attribute__((unused)) static double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One JSON object on one line: the result run.py parses. `extra` is more ',"k":v' text or "". */
__attribute__((unused)) static void bench_report(const char *bench, const char *unit, double *per_op, int reps, long iters,
                         const char *extra) {
    double min = per_op[0], max = per_op[0];
    for (int i = 1; i < reps; i++) {
        if (per_op[i] < min) min = per_op[i];
        if (per_op[i] > max) max = per_op[i];
    }
    double med = bench_median(per_op, reps);
    /* value: the fastest repetition, the one least disturbed by other processes on the machine */
    printf("{\"bench\":\"%s\",\"unit\":\"%s\",\"value\":%.4f,\"median\":%.4f,\"min\":%.4f,\"max\":%.4f,"
           "\"reps\":%d,\"iters\":%ld%s}\n",
           bench, unit, min, med, min, max, reps, iters, extra ? extra : "");
    fflush(stdout);
}

__attribute__((unused)) static void bench_die(const char *what, int err) {
    fprintf(stderr, "bench: %s: %s\n", what, strerror(err));
    exit(1);
}

#endif
