// SPDX-License-Identifier: MIT
// Workloads 4, 10, 11: fork + _exit + waitpid from a process with --threads T idle threads
// besides the main one (T = 0: a single-threaded process). Each idle thread has a 64 KiB stack
// (pthread_attr_setstacksize) and is blocked in read(2) on a pipe that is closed at the end. The
// child calls _exit(0) at once; the parent waits for it. With the shim, the child of a
// multi-threaded process writes its fork report at _exit (set FORKSAFE_LOG=/dev/null so the
// terminal does not distort timing).
// With --exec PATH the child calls execv(PATH, {PATH, NULL}) instead of _exit (a fork followed
// directly by exec, as subprocess does); PATH inherits the environment, so with LD_PRELOAD set it
// loads the shim too. It must exit 0.
// Under callgrind, bench/run.py adds --dump-before=_Fork: the parent dumps (and zeroes) its counts
// as it enters glibc's _Fork, so a child inherits only the few instructions of _Fork before the
// clone and its output file holds its own run from there on, the fork handlers included; with
// --exec, --dump-before=execve writes the child's part before exec (valgrind writes nothing at
// exec), and the exec'd program writes its own file under the same pid.
// Prints microseconds per fork+(_exit|exec)+waitpid: the fastest of --reps repetitions (and their
// median), and the minor page faults per fork, parent and child (getrusage).
//   bench_fork_threads [--quick] [--threads T] [--iters FORKS] [--reps R] [--exec PATH]
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define IDLE_STACK (64 * 1024)

static int pipefd[2];
static atomic_long started;
static char *exec_path; /* --exec PATH: the child execs PATH instead of _exit */

static void *idle_thread(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    char c;
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

__attribute__((noinline, used)) void timed_fork(long n) {
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) bench_die("fork", errno);
        if (pid == 0) {
            if (exec_path) {
                char *args[] = {exec_path, NULL};
                execv(exec_path, args);
                _exit(127);
            }
            _exit(0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) bench_die("waitpid", errno);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench: child ended with status 0x%x\n", st);
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 100, .reps = 5, .threads = 100};
    /* --exec PATH is ours; the rest goes to bench_parse */
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--exec") && i + 1 < argc) exec_path = argv[++i];
        else argv[kept++] = argv[i];
    }
    argc = kept;
    argv[argc] = NULL;
    bench_parse(argc, argv, &a, 5, 4, "[--exec PATH]");
    if (pipe(pipefd) != 0) bench_die("pipe", errno);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int e = pthread_attr_setstacksize(&attr, IDLE_STACK);
    if (e) bench_die("pthread_attr_setstacksize", e);
    pthread_t *tids = calloc((size_t)a.threads + 1, sizeof *tids);
    if (!tids) bench_die("calloc", errno);
    for (long i = 0; i < a.threads; i++) {
        e = pthread_create(&tids[i], &attr, idle_thread, NULL);
        if (e) bench_die("pthread_create", e);
    }
    while (atomic_load(&started) < a.threads) sched_yield();

    if (a.warmup) timed_fork(a.iters / 10 + 1);
    struct rusage self0, kids0, self1, kids1;
    getrusage(RUSAGE_SELF, &self0);
    getrusage(RUSAGE_CHILDREN, &kids0);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a.reps; r++) {
        double t0 = bench_now_ns();
        timed_fork(a.iters);
        per[r] = (bench_now_ns() - t0) / 1e3 / (double)a.iters;
    }
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &kids1);
    /* Minor page faults per fork, parent and child together: copy-on-write and lazy mapping. */
    double flt = (double)((self1.ru_minflt - self0.ru_minflt) + (kids1.ru_minflt - kids0.ru_minflt)) /
                 ((double)a.iters * a.reps);
    char extra[256];
    snprintf(extra, sizeof extra, ",\"threads\":%ld,\"stack_kib\":%d,\"minflt_per_fork\":%.2f,\"exec\":%s", a.threads,
             IDLE_STACK / 1024, flt, exec_path ? "true" : "false");
    bench_report("fork_threads", "us/fork", per, a.reps, a.iters, extra);

    close(pipefd[1]);
    for (long i = 0; i < a.threads; i++) pthread_join(tids[i], NULL);
    free(tids);
    return 0;
}
