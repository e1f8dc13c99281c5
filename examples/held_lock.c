// SPDX-License-Identifier: MIT
// A thread holds a lock (a POSIX semaphore, as CPython's locks are) at the moment the main thread
// forks. The child's first sem_wait hangs forever without libforksafe.
//
//   cc -pthread -rdynamic -o held_lock examples/held_lock.c  (-rdynamic: reports name `worker`)
//   ./held_lock                                         # "child: still waiting after 3 s"
//   LD_PRELOAD=build/lib/libforksafe.so ./held_lock     # the child gets the lock; report on stderr
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static sem_t lock;
static int held[2], release_it[2];

void *worker(void *arg);
void *worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "worker");
    sem_wait(&lock);                 /* takes the lock ... */
    (void)!write(held[1], "h", 1);
    char c;
    (void)!read(release_it[0], &c, 1); /* ... and is busy with it when main forks */
    sem_post(&lock);
    return NULL;
}

int main(void) {
    pthread_t t;
    char c;
    sem_init(&lock, 0, 1);
    if (pipe(held) || pipe(release_it) || pthread_create(&t, NULL, worker, NULL)) return 1;
    (void)!read(held[0], &c, 1);

    pid_t pid = fork();
    if (pid == 0) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 3;
        if (sem_timedwait(&lock, &deadline) != 0 && errno == ETIMEDOUT) {
            printf("child: still waiting after 3 s -- the lock's holder does not exist here\n");
            fflush(stdout);
            _exit(1);
        }
        printf("child: got the lock\n");
        fflush(stdout);
        sem_post(&lock);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    (void)!write(release_it[1], "r", 1);
    pthread_join(t, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
