// SPDX-License-Identifier: MIT
// Workload 12: process start. fork + execve(PATH, ARGS) + waitpid from a parent that is itself
// NOT preloaded: with --preload LIB, LD_PRELOAD=LIB is put only in the child's environment
// (given to execve), so what is measured is the cost of starting a program with the library
// preloaded, nothing in the parent. Without --preload the child's environment is the parent's,
// less any LD_PRELOAD: the same program, the same path, the "without" side.
// Under callgrind, bench/run.py adds --dump-before=_Fork and --dump-before=execve (see
// fork_threads.c): each child pid's files are its part before exec and the exec'd program.
// Prints microseconds per start (fork + execve + the program's run + waitpid): the fastest of
// --reps repetitions (and their median), and the minor page faults per start, parent and child
// (getrusage). PATH must exit 0. --quick with no PATH runs /bin/true.
//   bench_exec_start [--quick] [--iters N] [--reps R] [--no-warmup] [--preload LIB] [PATH [ARGS...]]
#include "bench_common.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char **child_argv, **child_envp;

__attribute__((noinline, used)) void timed_exec_start(long n) {
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) bench_die("fork", errno);
        if (pid == 0) {
            execve(child_argv[0], child_argv, child_envp);
            _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR) bench_die("waitpid", errno);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench: %s ended with status 0x%x\n", child_argv[0], st);
            exit(1);
        }
    }
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 100, .reps = 5};
    const char *preload = NULL;
    /* Our options first; the first argument that is not one of them starts the command. */
    int i = 1, kept = 1;
    char *quick_cmd[] = {"/bin/true", NULL};
    for (; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--preload") && i + 1 < argc) preload = argv[++i];
        else if (!strcmp(s, "--quick") || !strcmp(s, "--no-warmup")) argv[kept++] = argv[i];
        else if ((!strcmp(s, "--iters") || !strcmp(s, "--reps")) && i + 1 < argc) {
            argv[kept++] = argv[i++];
            argv[kept++] = argv[i];
        } else if (s[0] == '-') bench_usage(argv[0], "[--preload LIB] [PATH [ARGS...]]");
        else break;
    }
    child_argv = i < argc ? &argv[i] : NULL;
    char *saved = argv[kept];
    argv[kept] = NULL;
    bench_parse(kept, argv, &a, 5, -1, "[--preload LIB] [PATH [ARGS...]]");
    argv[kept] = saved;
    if (!child_argv) {
        if (!a.quick) bench_usage(argv[0], "[--preload LIB] [PATH [ARGS...]]");
        child_argv = quick_cmd;
    }

    /* The child's environment: ours without LD_PRELOAD, plus LD_PRELOAD=LIB with --preload. */
    size_t n = 0;
    while (environ[n]) n++;
    child_envp = calloc(n + 2, sizeof *child_envp);
    if (!child_envp) bench_die("calloc", errno);
    size_t k = 0;
    for (size_t j = 0; j < n; j++)
        if (strncmp(environ[j], "LD_PRELOAD=", 11) != 0) child_envp[k++] = environ[j];
    if (preload) {
        size_t len = strlen(preload) + 12;
        char *e = malloc(len);
        if (!e) bench_die("malloc", errno);
        snprintf(e, len, "LD_PRELOAD=%s", preload);
        child_envp[k++] = e;
    }
    child_envp[k] = NULL;

    if (a.warmup) timed_exec_start(a.iters / 10 + 1);
    struct rusage self0, kids0, self1, kids1;
    getrusage(RUSAGE_SELF, &self0);
    getrusage(RUSAGE_CHILDREN, &kids0);
    double per[BENCH_MAX_REPS];
    for (int r = 0; r < a.reps; r++) {
        double t0 = bench_now_ns();
        timed_exec_start(a.iters);
        per[r] = (bench_now_ns() - t0) / 1e3 / (double)a.iters;
    }
    getrusage(RUSAGE_SELF, &self1);
    getrusage(RUSAGE_CHILDREN, &kids1);
    double flt = (double)((self1.ru_minflt - self0.ru_minflt) + (kids1.ru_minflt - kids0.ru_minflt)) /
                 ((double)a.iters * a.reps);
    char extra[128];
    snprintf(extra, sizeof extra, ",\"preloaded_child\":%s,\"preloaded_parent\":%s,\"minflt_per_start\":%.2f",
             preload ? "true" : "false", getenv("LD_PRELOAD") ? "true" : "false", flt);
    bench_report("exec_start", "us/start", per, a.reps, a.iters, extra);
    return 0;
}
