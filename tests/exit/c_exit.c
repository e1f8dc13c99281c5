// SPDX-License-Identifier: MIT
// A C program that ends while two worker threads are still alive, for check_c_exit.py.
//
//   c_exit END [BUSY [IDLE]]
//
// END, how the main thread ends the process:
//   return   return from main (glibc calls exit internally, not through the PLT)
//   exit     call exit(0)
//   _exit    call _exit(0)
//   _Exit    call _Exit(0)
//   exec     execv("/bin/true")
//   forkexec fork a child that execs /bin/true at once, wait for it, then return from main
//   dump     wait until stdin reaches end of file (the driver signals the process meanwhile),
//            then return from main; the workers block SIGUSR1 and SIGUSR2, so a signal sent to
//            the process is taken by the main thread (blocked in read)
// BUSY, what "busy-worker" does: spin (a volatile loop, never a system call; the default) or
//   sleep (a work loop that sleeps 1 ms per round in nanosleep).
// IDLE, what "idle-worker" blocks in: cond (pthread_cond_wait, a futex; the default) or pipe
//   (read on a pipe that is never written).
//
// Before ending, main waits (bounded, polling /proc) until both workers really are where they
// should be: busy-worker inside its loop (running, or in clock_nanosleep for `sleep`), idle-worker
// asleep in futex or read. It prints, with write(2) so nothing stays in a stdio buffer at _exit:
//   TIDS main=<tid> busy=<tid> idle=<tid>
//   CHILD <pid>            (forkexec)
// Exit status 0; 1 if a check failed; 2 on bad usage.
// Built with -rdynamic so busy_worker and idle_worker are in the dynamic symbol table:
//   cc -O2 -g -pthread -rdynamic -o c_exit c_exit.c
#include "forksafe_test.h"

static int busy_sleeps;  /* BUSY == sleep */
static int idle_on_pipe; /* IDLE == pipe */
static atomic_int busy_tid, idle_tid;
static atomic_long busy_rounds;
static volatile unsigned long spin_sink;
static volatile int stop_flag; /* never set: the workers run until the process ends */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int never_fd[2];

__attribute__((noinline)) void *busy_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "busy-worker");
    atomic_store(&busy_tid, gettid_now());
    while (!stop_flag) {
        if (busy_sleeps) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } else {
            for (int i = 0; i < 100000; i++) spin_sink += (unsigned long)i;
        }
        atomic_fetch_add(&busy_rounds, 1);
    }
    return NULL;
}

__attribute__((noinline)) void *idle_worker(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "idle-worker");
    atomic_store(&idle_tid, gettid_now());
    if (idle_on_pipe) {
        char c;
        for (;;)
            if (read(never_fd[0], &c, 1) >= 0 || errno != EINTR) break;
    } else {
        pthread_mutex_lock(&mu);
        while (!stop_flag) pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

/* Polls a condition with a deadline: up to 10 s. */
static void wait_until_ready(void) {
    double deadline = now_s() + 10.0;
    for (;;) {
        pid_t b = atomic_load(&busy_tid), i = atomic_load(&idle_tid);
        int ok = b && i && atomic_load(&busy_rounds) > 2;
        if (ok) {
            long sb = task_syscall(b, NULL), si = task_syscall(i, NULL);
            /* idle: asleep in futex or read. busy: its loop has run a few rounds; the spinning
             * one makes no system call, the sleeping one is in (clock_)nanosleep or between. */
            ok = (idle_on_pipe ? si == SYS_read : si == SYS_futex) &&
                 (!busy_sleeps || sb == -1 || sb == SYS_clock_nanosleep || sb == SYS_nanosleep);
        }
        if (ok) return;
        CHECK(now_s() < deadline);
        sleep_ms(1); /* polling a condition with a deadline */
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        dprintf(2, "usage: c_exit return|exit|_exit|_Exit|exec|forkexec|dump [spin|sleep [cond|pipe]]\n");
        return 2;
    }
    const char *end = argv[1];
    busy_sleeps = argc > 2 && !strcmp(argv[2], "sleep");
    idle_on_pipe = argc > 3 && !strcmp(argv[3], "pipe");
    CHECK(pipe2(never_fd, O_CLOEXEC) == 0);

    /* dump: only the main thread takes SIGUSR1/SIGUSR2, so the test knows which thread was
     * interrupted (the workers inherit the blocked mask). */
    sigset_t usr, old;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    int dump = !strcmp(end, "dump");
    if (dump) CHECK(pthread_sigmask(SIG_BLOCK, &usr, &old) == 0);
    pthread_t b, i;
    CHECK(pthread_create(&b, NULL, busy_worker, NULL) == 0);
    CHECK(pthread_create(&i, NULL, idle_worker, NULL) == 0);
    if (dump) CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
    wait_until_ready();
    dprintf(1, "TIDS main=%d busy=%d idle=%d\n", (int)gettid_now(), (int)atomic_load(&busy_tid),
            (int)atomic_load(&idle_tid));

    if (!strcmp(end, "return")) return 0;
    if (!strcmp(end, "exit")) exit(0);
    if (!strcmp(end, "_exit")) _exit(0);
    if (!strcmp(end, "_Exit")) _Exit(0);
    if (!strcmp(end, "exec")) {
        char *const args[] = {"true", NULL};
        execv("/bin/true", args);
        CHECK(!"execv failed");
    }
    if (!strcmp(end, "forkexec")) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            char *const args[] = {"true", NULL};
            execv("/bin/true", args);
            _exit(127);
        }
        dprintf(1, "CHILD %d\n", (int)pid);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid); /* /bin/true ends at once */
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        return 0;
    }
    if (!strcmp(end, "dump")) {
        dprintf(1, "READY\n");
        char buf[64];
        ssize_t n;
        do n = read(0, buf, sizeof buf); while (n > 0 || (n < 0 && errno == EINTR));
        return 0;
    }
    dprintf(2, "c_exit: unknown END %s\n", end);
    return 2;
}
