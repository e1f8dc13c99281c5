// SPDX-License-Identifier: MIT
// Starts N threads that block, forks, and the child exits: a fork report listing N lost threads
// (large: the journal test sends it through a memfd). Also, linked -static, a program the
// dynamic loader never sees (forksafe check's static case).
//   many_threads N
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int fds[2];

static void *block(void *arg) {
    (void)arg;
    char c;
    while (read(fds[0], &c, 1) < 0) {}
    return NULL;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    if (pipe(fds) != 0) return 1;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, block, NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) exit(0);   /* the child goes on (exits normally): its report is written */
    int st;
    waitpid(pid, &st, 0);
    printf("child %d exited %d\n", (int)pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
