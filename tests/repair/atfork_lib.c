// SPDX-License-Identifier: MIT
// A library that, like gRPC or a metrics client, registers fork handlers from its constructor --
// which runs before libforksafe's. Its prepare handler stops its worker thread (so that thread is
// not lost at fork) and its child handler takes a lock. Used by the `atfork_order` scenario.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

static pthread_t worker;
static int stop_pipe[2];
static sem_t *child_lock;
static int child_ok;

static void *worker_main(void *p) {
    (void)p;
    pthread_setname_np(pthread_self(), "libworker");
    char c;
    while (read(stop_pipe[0], &c, 1) < 0) {}
    return NULL;
}

static void start_worker(void) {
    if (pipe(stop_pipe) == 0) pthread_create(&worker, NULL, worker_main, NULL);
}

static void prepare(void) {
    /* Quiesce: stop the worker before fork, as careful libraries do. */
    (void)!write(stop_pipe[1], "s", 1);
    pthread_join(worker, NULL);
    close(stop_pipe[0]);
    close(stop_pipe[1]);
}

static void parent(void) { start_worker(); }

static void child(void) {
    /* A lost thread holds this lock: without the shim's child handler before us, this hangs. */
    if (child_lock) child_ok = sem_wait(child_lock) == 0;
}

__attribute__((constructor)) static void init(void) {
    pthread_atfork(prepare, parent, child);
    start_worker();
}

void atfork_lib_set_lock(sem_t *s) { child_lock = s; }
int atfork_lib_child_ok(void) { return child_ok; }
