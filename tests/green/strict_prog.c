// SPDX-License-Identifier: MIT
// Strict mode from C: a thread whose start routine is monitor_idle_loop (OS name "mon-idle")
// waits for ever; main forks. The child then either goes on (`run`: a little work, then
// _exit(0)) or execs /bin/true at once (`exec`). The parent waits for it and exits with the
// child's status: 0, or 70 when strict mode ended it.
//   strict_prog run|exec     (built with -rdynamic, so the start routine has a name)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int started;

void *monitor_idle_loop(void *arg) {
    (void)arg;
    pthread_mutex_lock(&m);
    started = 1;
    pthread_cond_broadcast(&c);
    for (;;) pthread_cond_wait(&c, &m); /* idle: waits for work that never comes */
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "run") && strcmp(argv[1], "exec"))) {
        fprintf(stderr, "usage: strict_prog run|exec\n");
        return 2;
    }
    pthread_t t;
    pthread_create(&t, NULL, monitor_idle_loop, NULL);
    pthread_setname_np(t, "mon-idle");
    pthread_mutex_lock(&m);
    while (!started) pthread_cond_wait(&c, &m);
    pthread_mutex_unlock(&m);
    pid_t pid = fork();
    if (pid == 0) {
        if (strcmp(argv[1], "exec") == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        volatile unsigned long sum = 0;
        for (unsigned long i = 0; i < 1000; i++) sum += i;
        _exit(sum == 499500 ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 3;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
