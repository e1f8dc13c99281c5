// SPDX-License-Identifier: MIT
// Workload 9: resident memory. Prints VmRSS (from /proc/self/status) before and after creating
//   threads T: T live threads with 64 KiB stacks, each blocked in read(2) on a pipe;
//   sems N:    N semaphores sem_init(s, 0, 1)'ed in one malloc'd array, each then taken and
//              released once (sem_trywait + sem_post) so the shim writes its owner tag.
// run.py subtracts the without-shim figures from the with-shim ones: the shim's cost per thread
// and per semaphore. If the kernel refuses a thread (ulimit -u, threads-max, pid_max,
// vm.max_map_count) the program says how many it created and exits 1.
//   bench_mem [--quick] threads [--threads T]
//   bench_mem [--quick] sems [--iters N]
#include "bench_common.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

#define THREAD_STACK (64 * 1024)

static int pipefd[2];
static atomic_long started;

static long vm_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) bench_die("/proc/self/status", errno);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static void *idle_thread(void *arg) {
    (void)arg;
    atomic_fetch_add(&started, 1);
    char c;
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

static int run_threads(long n) {
    if (pipe(pipefd) != 0) bench_die("pipe", errno);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int e = pthread_attr_setstacksize(&attr, THREAD_STACK);
    if (e) bench_die("pthread_attr_setstacksize", e);
    pthread_t *tids = calloc((size_t)n + 1, sizeof *tids);
    if (!tids) bench_die("calloc", errno);
    long before = vm_rss_kib();
    long made = 0;
    for (; made < n; made++) {
        e = pthread_create(&tids[made], &attr, idle_thread, NULL);
        if (e) break;
    }
    while (atomic_load(&started) < made) sched_yield();
    long after = vm_rss_kib();
    if (made < n)
        fprintf(stderr, "bench_mem: pthread_create failed after %ld of %ld threads: %s "
                "(check ulimit -u, /proc/sys/kernel/threads-max, pid_max, vm.max_map_count)\n",
                made, n, strerror(e));
    printf("{\"bench\":\"mem_threads\",\"count\":%ld,\"requested\":%ld,\"stack_kib\":%d,"
           "\"rss_before_kib\":%ld,\"rss_after_kib\":%ld}\n",
           made, n, THREAD_STACK / 1024, before, after);
    fflush(stdout);
    close(pipefd[1]);
    for (long i = 0; i < made; i++) pthread_join(tids[i], NULL);
    free(tids);
    return made == n ? 0 : 1;
}

static int run_sems(long n) {
    long before = vm_rss_kib();
    sem_t *s = malloc((size_t)n * sizeof *s);
    if (!s) bench_die("malloc", errno);
    for (long i = 0; i < n; i++)
        if (sem_init(&s[i], 0, 1) != 0) bench_die("sem_init", errno);
    for (long i = 0; i < n; i++) {
        if (sem_trywait(&s[i]) != 0) bench_die("sem_trywait", errno);
        sem_post(&s[i]);
    }
    long after = vm_rss_kib();
    printf("{\"bench\":\"mem_sems\",\"count\":%ld,\"sem_size\":%zu,"
           "\"rss_before_kib\":%ld,\"rss_after_kib\":%ld}\n",
           n, sizeof *s, before, after);
    fflush(stdout);
    for (long i = 0; i < n; i++) sem_destroy(&s[i]);
    free(s);
    return 0;
}

int main(int argc, char **argv) {
    struct bench_args a = {.iters = 1000000, .reps = 1, .threads = 10000};
    bench_parse(argc, argv, &a, 10000, 100, "threads|sems");
    if (!a.mode || !strcmp(a.mode, "threads")) {
        int r = run_threads(a.threads);
        if (r || a.mode) return r;
        return run_sems(a.iters); /* no mode (e.g. --quick alone): both */
    }
    if (!strcmp(a.mode, "sems")) return run_sems(a.iters);
    bench_usage(argv[0], "threads|sems");
    return 2;
}
