// SPDX-License-Identifier: MIT
// Workload 13: uncontended pthread_mutex_lock + pthread_mutex_unlock on one normal mutex, in a
// multi-threaded process (one extra thread, blocked on a pipe read): the path every C library
// and CPython's GIL take. Modes:
//   (none)   in a process that has not forked: the shim's wrappers are one test and a jump
//   child    in a child of fork() (a pre-forking server's worker): the shim checks each lock's
//            owner against the threads lost at the fork (none here)
// Prints nanoseconds per lock+unlock pair: the fastest of --reps repetitions (and their median).
//   bench_mutex_pair [child] [--quick] [--iters N] [--reps R]
#include "bench_common.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static int pipefd[2];

static void *idle_thread(void *arg) {
    (void)arg;
    char c;
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

/* The timed loop; its name starts with timed_ for callgrind's --toggle-collect. */
__attribute__((noinline, used)) void timed_mutex_pair(long n) {
    for (long i = 0; i < n; i++) {
        int e = pthread_mutex_lock(&mutex);
        if (e) bench_die("pthread_mutex_lock", e);
        pthread_mutex_unlock(&mutex);
    }
}

static void run(struct bench_args *a, const char *name) {
    if (a->warmup) timed_mutex_pair(a->iters / 4 + 1);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a->reps; r++) {
        double t0 = bench_now_ns();
        timed_mutex_pair(a->iters);
        per[r] = (bench_now_ns() - t0) / (double)a->iters;
    }
    bench_report(name, "ns/pair", per, a->reps, a->iters, "");
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 1000000, .reps = 7};
    bench_parse(argc, argv, &a, 1000, -1, "[child]");
    int in_child = a.mode && strcmp(a.mode, "child") == 0;
    if (a.mode && !in_child) bench_usage(argv[0], "[child]");
    if (pipe(pipefd) != 0) bench_die("pipe", errno);
    pthread_t idle;
    int e = pthread_create(&idle, NULL, idle_thread, NULL);
    if (e) bench_die("pthread_create", e);

    if (in_child) {
        /* The extra thread is lost in the child: the process is a forked child of a
         * multi-threaded parent, as a gunicorn or uWSGI worker is. */
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) bench_die("fork", errno);
        if (pid == 0) {
            run(&a, "mutex_pair_child");
            _exit(0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    } else {
        run(&a, "mutex_pair");
    }
    close(pipefd[1]); /* the idle thread reads EOF and ends */
    pthread_join(idle, NULL);
    return 0;
}
