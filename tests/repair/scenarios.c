// SPDX-License-Identifier: MIT
// C scenarios: one case per command-line name (`scenarios CASE`, or `scenarios list`), each a
// real fork in a process whose other thread holds a semaphore used as a lock. A case judges its
// own child with a bounded wait and knows what to expect with and without the shim loaded, so
// the same case run both ways shows the hang and the repair. Reports are checked by the driver
// (tests/repair/check_c.py) from the log file. The holder thread (holder_main), CHECK and the
// bounded waits are tests/lib/forksafe_test.h's.
#include "forksafe_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <pty.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#define HANG_MS 1500   /* without the shim a blocked child is declared hung after this */
#define DONE_MS 10000  /* with the shim a child must finish within this */

/* In a child: the lock behaves as a free lock once released. */
static void lock_still_works(sem_t *s) {
    CHECK(sem_post(s) == 0);
    int v;
    CHECK(sem_getvalue(s, &v) == 0 && v == 1);
    CHECK(sem_trywait(s) == 0);
    CHECK(sem_trywait(s) == -1 && errno == EAGAIN);
    CHECK(sem_post(s) == 0);
}

enum how { BY_WAIT, BY_TRYWAIT, BY_TIMEDWAIT, BY_CLOCKWAIT };

static int acquire(sem_t *s, enum how how) {
    struct timespec t;
    switch (how) {
    case BY_WAIT: return sem_wait(s);
    case BY_TRYWAIT: return sem_trywait(s);
    case BY_TIMEDWAIT: t = deadline_ms(CLOCK_REALTIME, HANG_MS / 2); return sem_timedwait(s, &t);
    case BY_CLOCKWAIT: t = deadline_ms(CLOCK_MONOTONIC, HANG_MS / 2); return sem_clockwait(s, CLOCK_MONOTONIC, &t);
    }
    return -1;
}

/* A lost thread held the lock (taken once: not a proven lock) and the child is single-threaded,
 * so no one else could ever release it: sem_wait gets it with the shim (rule 2c, second branch);
 * without, it hangs. A wait with a deadline (sem_timedwait, sem_clockwait) times out both ways:
 * it ends by itself, and an unproven semaphore may be a signal the program expects may not come
 * (reported: not_proven_timed). sem_trywait never repairs (rule 1): it fails with EAGAIN both
 * ways, the value stays 0. */
static int held_lock(enum how how) {
    sem_t s;
    struct holder h;
    CHECK(sem_init(&s, 0, 1) == 0);
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (acquire(&s, how) != 0) {
            int e = errno, v = -1;
            sem_getvalue(&s, &v);
            _exit(e == (how == BY_TRYWAIT ? EAGAIN : ETIMEDOUT) && v == 0 ? 2 : 6);
        }
        lock_still_works(&s);
        _exit(0);
    }
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (how == BY_TRYWAIT) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2); /* rule 1 */
    else if (shim_loaded() && how == BY_WAIT) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else if (how == BY_WAIT) CHECK(st == -1);
    else CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
    return 0;
}
static int case_held_wait(void) { return held_lock(BY_WAIT); }
static int case_held_trywait(void) { return held_lock(BY_TRYWAIT); }
static int case_held_timedwait(void) { return held_lock(BY_TIMEDWAIT); }
static int case_held_clockwait(void) { return held_lock(BY_CLOCKWAIT); }

/* Never repaired: the child's wait still times out, with or without the shim. */
static int expect_child_timeout(sem_t *s) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (times_out(s, 300)) _exit(0);
        fprintf(stderr, "the child's timed wait did not time out: it got the semaphore\n");
        _exit(3);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

static int case_pshared(void) {
    sem_t *s = mmap(NULL, sizeof(sem_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(s != MAP_FAILED && sem_init(s, 1, 1) == 0);
    struct holder h;
    holder_start(&h, s, "holder");
    expect_child_timeout(s);
    holder_finish(&h);
    return 0;
}

/* Initial value 0: a semaphore for signalling. A lost thread waits on it; the child's wait must
 * keep waiting. */
struct sig_waiter { sem_t *s; int ready[2]; };
static void *waiter_main(void *p) {
    struct sig_waiter *w = p;
    CHECK(write(w->ready[1], "r", 1) == 1);
    sem_wait(w->s);
    return NULL;
}
static int case_signal_sem(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 0) == 0);
    struct sig_waiter w = {&s, {-1, -1}};
    CHECK(pipe(w.ready) == 0);
    pthread_t t;
    char c;
    CHECK(pthread_create(&t, NULL, waiter_main, &w) == 0 && read(w.ready[0], &c, 1) == 1);
    expect_child_timeout(&s);
    CHECK(sem_post(&s) == 0 && pthread_join(t, NULL) == 0);
    return 0;
}

/* Initial value 1 but used for hand-off: released by a thread that had not taken it. Then a
 * lost thread takes it; that is signalling, not a lock, and is not repaired. */
static void *poster_main(void *p) {
    sem_post(p);
    return NULL;
}
static int case_handoff_sem(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    CHECK(sem_wait(&s) == 0);          /* main takes it ... */
    struct holder h;
    CHECK(sem_post(&s) == 0);          /* (release so the holder can start) */
    CHECK(sem_wait(&s) == 0);
    pthread_t t;                       /* ... and another thread gives it back */
    CHECK(pthread_create(&t, NULL, poster_main, &s) == 0 && pthread_join(t, NULL) == 0);
    holder_start(&h, &s, "holder");
    expect_child_timeout(&s);
    holder_finish(&h);
    return 0;
}

/* The forking thread held the lock: in the child it is still held by the child's thread, which
 * can release it; a thread created in the child waits until then. */
struct waiter { sem_t *s; int got; };
static void *timed_taker(void *p) {
    struct waiter *w = p;
    w->got = !times_out(w->s, 300);
    return NULL;
}
static void *blocking_taker(void *p) {
    struct waiter *w = p;
    w->got = sem_wait(w->s) == 0;
    return NULL;
}
static int case_forker_held(void) {
    sem_t s, other;
    CHECK(sem_init(&s, 0, 1) == 0 && sem_init(&other, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &other, "holder"); /* makes the process multi-threaded */
    CHECK(sem_wait(&s) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct waiter w = {&s, 0};
        pthread_t t;
        CHECK(pthread_create(&t, NULL, timed_taker, &w) == 0 && pthread_join(t, NULL) == 0);
        if (w.got) _exit(3);                   /* was wrongly handed over */
        CHECK(sem_post(&s) == 0);              /* the child's thread still owns it */
        CHECK(pthread_create(&t, NULL, blocking_taker, &w) == 0 && pthread_join(t, NULL) == 0);
        _exit(w.got ? 0 : 4);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(sem_post(&s) == 0);
    holder_finish(&h);
    return 0;
}

/* A lock taken by a thread created in the child, which then ends without releasing it: that is
 * the program's bug, not a fork's, and stays as it is. */
static void *take_and_leave(void *p) {
    sem_wait(p);
    return NULL;
}
static int case_child_thread_lock(void) {
    sem_t s, other;
    CHECK(sem_init(&s, 0, 1) == 0 && sem_init(&other, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &other, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, take_and_leave, &s) == 0 && pthread_join(t, NULL) == 0);
        _exit(times_out(&s, 300) ? 0 : 3);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    holder_finish(&h);
    return 0;
}

/* Nested: a lock orphaned at the first fork, and one orphaned at a second fork made by the child
 * after it started a thread of its own. The grandchild gets both. */
static int case_nested(void) {
    sem_t s1, s2;
    CHECK(sem_init(&s1, 0, 1) == 0 && sem_init(&s2, 0, 1) == 0);
    struct holder h1;
    holder_start(&h1, &s1, "holder1");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct holder h2;
        holder_start(&h2, &s2, "holder2");
        pid_t g = fork();
        CHECK(g >= 0);
        if (g == 0) {
            if (sem_wait(&s1) != 0 || sem_wait(&s2) != 0) _exit(2);
            lock_still_works(&s1);
            lock_still_works(&s2);
            _exit(0);
        }
        int st = wait_child(g, shim_loaded() ? DONE_MS : HANG_MS);
        holder_finish(&h2);
        _exit(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 5);
    }
    int st = wait_child(pid, DONE_MS + 2000);
    holder_finish(&h1);
    CHECK(st >= 0 && WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == (shim_loaded() ? 0 : 5));
    return 0;
}

/* Two threads of the child race for one orphaned lock: exactly one gets it at a time, both get
 * it in the end. The holder proved it a lock first (wait, post, wait): with other threads in the
 * child, only a proven lock is repaired (rule 2c, first branch). */
struct racer { sem_t *s; pthread_barrier_t *b; _Atomic int *inside, *violations, *done; };
static void *racer_main(void *p) {
    struct racer *r = p;
    pthread_barrier_wait(r->b);
    if (sem_wait(r->s) != 0) return NULL;
    if (atomic_fetch_add(r->inside, 1) != 0) atomic_fetch_add(r->violations, 1);
    for (int i = 0; i < 100000; i++) __asm__ volatile("" ::: "memory"); /* stay inside a while */
    atomic_fetch_sub(r->inside, 1);
    atomic_fetch_add(r->done, 1);
    sem_post(r->s);
    return NULL;
}
static int case_race(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start_proven(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_barrier_t b;
        _Atomic int inside = 0, violations = 0, done = 0;
        pthread_barrier_init(&b, NULL, 2);
        struct racer r = {&s, &b, &inside, &violations, &done};
        pthread_t t1, t2;
        CHECK(pthread_create(&t1, NULL, racer_main, &r) == 0 && pthread_create(&t2, NULL, racer_main, &r) == 0);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        _exit(violations == 0 && done == 2 ? 0 : 3);
    }
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else CHECK(st == -1);
    return 0;
}

/* FORKSAFE_MODE=report (set by check_c.py): the orphaned lock is reported, not repaired (rules
 * 2d and 3). Pattern: a first deployment that only watches. The child is single-threaded, so the
 * lock would be repairable (rule 2c): the one lock_orphaned event says why it was not, reason
 * "report_mode". */
static int case_report_mode(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    expect_child_timeout(&s);
    holder_finish(&h);
    return 0;
}

/* A fork followed directly by exec writes no report; a fork whose child goes on writes one. */
static int case_exec_no_report(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    holder_finish(&h);
    return 0;
}

static int case_fork_report(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    printf("holder_tid=%d\nparent_pid=%d\n", h.tid, getpid());
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    printf("child_pid=%d\n", pid);
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    holder_finish(&h);
    return 0;
}

/* A thread libc starts itself (the SIGEV_THREAD timer helper, through the hidden
 * __pthread_create): no wrapper sees it, the fork report must still list it. */
static void on_timer(union sigval v) { (void)v; }
static int case_libc_thread(void) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = on_timer;
    timer_t timer;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0); /* starts glibc's helper thread */
    for (int i = 0; i < 1000; i++) {                        /* wait (bounded) until it exists */
        struct timespec ms = {0, 1000000};
        char path[64];
        int n = 0;
        DIR *d = opendir("/proc/self/task");
        for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
        if (d) closedir(d);
        if (n >= 2) break;
        (void)path;
        nanosleep(&ms, NULL);
    }
    printf("parent_pid=%d\n", getpid());
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

static int case_single_threaded(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    int st = wait_child(pid, DONE_MS);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* The wrappers leave errno as the program expects it. */
static int case_errno(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    errno = 1234;
    CHECK(sem_trywait(&s) == 0 && errno == 1234);
    CHECK(sem_trywait(&s) == -1 && errno == EAGAIN);
    errno = 1234;
    CHECK(sem_post(&s) == 0 && errno == 1234);
    CHECK(sem_wait(&s) == 0 && errno == 1234);
    struct timespec t = deadline_ms(CLOCK_REALTIME, 10);
    CHECK(sem_timedwait(&s, &t) == -1 && errno == ETIMEDOUT);
    CHECK(sem_post(&s) == 0);
    pthread_t th;
    errno = 1234;
    CHECK(pthread_create(&th, NULL, take_and_leave, &s) == 0 && errno == 1234);
    CHECK(pthread_join(th, NULL) == 0);
    /* and in a child, on the repair path */
    struct holder h;
    sem_t s2;
    CHECK(sem_init(&s2, 0, 1) == 0);
    holder_start(&h, &s2, "holder");
    pid_t pid = fork();
    if (pid == 0) {
        errno = 4321;
        int r = sem_wait(&s2);
        _exit(r == 0 && errno == 4321 ? 0 : 3);
    }
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* forkpty() reaches glibc's hidden fork: no fork() wrapper, the atfork handlers still repair. */
static int case_forkpty(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    CHECK(pid >= 0);
    if (pid == 0) _exit(sem_wait(&s) == 0 ? 0 : 2);
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    close(master);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else CHECK(st == -1);
    return 0;
}

/* The program closes stderr and reuses fd 2 for its own file: our lines must not land there. */
static int case_fd2_reuse(void) {
    const char *path = getenv("FD2_FILE");
    CHECK(path != NULL);
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    close(2);
    CHECK(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644) == 2);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(sem_wait(&s) == 0 ? 0 : 2);
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(write(2, "program data\n", 13) == 13);
    return 0;
}

/* The library of tests/repair/atfork_lib.c registered its handlers from its constructor, before ours.
 * Its prepare handler stops its worker thread (that thread is not lost); its child handler takes
 * a lock held by our holder (lost), which only works if our child handler ran first. */
#ifdef WITH_ATFORK_LIB
void atfork_lib_set_lock(sem_t *s);
int atfork_lib_child_ok(void);
static int case_atfork_order(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    atfork_lib_set_lock(&s);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(atfork_lib_child_ok() ? 0 : 2);
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else CHECK(st == -1);
    return 0;
}
#endif

/* ---- The repair rules ----
 * Rule 1: sem_trywait never repairs and never reports. Rule 2: a blocking wait in a child repairs
 * a taken semaphore only if (a) its last taker was alive at the fork and lost by it, (b) it was
 * never posted by another thread nor while free, (c) it is a proven lock (one complete
 * take-then-post by one thread) or the waiter is the child's only thread, (d) the settings allow.
 * Rule 3: when (a) holds but repair is refused, one lock_orphaned event with a reason. Rule 4: a
 * repair's owner is among the fork report's lost threads. Rule 5: a long chain of forks never
 * fills the thread registry. check_c.py checks each case's events. */

/* A thread that blocks until the pipe `*fd` is readable (or at EOF). */
static void *idle_on_pipe(void *p) {
    char c;
    while (read(*(int *)p, &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

/* token_trywait (rule 1). Pattern: a semaphore initialised to 1 used as a one-time token --
 * whoever wins sem_trywait does the job, once, and never posts it (an "init once" or "only one
 * flusher" guard). A worker won it and is still alive at the fork. In the child, sem_trywait
 * must fail with EAGAIN exactly as without the shim: the token is spent, it is not a lock to
 * hand over; and nothing is reported about it. */
struct token_worker { sem_t *once; int ready[2], release[2]; int won; };
static void *token_worker_main(void *p) {
    struct token_worker *w = p;
    pthread_setname_np(pthread_self(), "worker");
    w->won = sem_trywait(w->once) == 0;
    CHECK(write(w->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(w->release[0], &c, 1) == 1);
    return NULL; /* never posts: the token is spent */
}
static int case_token_trywait(void) {
    sem_t once;
    CHECK(sem_init(&once, 0, 1) == 0);
    struct token_worker w = {&once, {-1, -1}, {-1, -1}, 0};
    CHECK(pipe2(w.ready, O_CLOEXEC) == 0 && pipe2(w.release, O_CLOEXEC) == 0);
    pthread_t t;
    char c;
    CHECK(pthread_create(&t, NULL, token_worker_main, &w) == 0 && read(w.ready[0], &c, 1) == 1 && w.won);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int r = sem_trywait(&once), e = errno, v = -1;
        sem_getvalue(&once, &v);
        if (r == 0) fprintf(stderr, "token_trywait: the child's sem_trywait took the spent token\n");
        _exit(r == -1 && e == EAGAIN && v == 0 ? 0 : 3);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(write(w.release[1], "x", 1) == 1 && pthread_join(t, NULL) == 0);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* bounded_buffer (rule 2c, then 3). Pattern: the classic one-slot bounded buffer, `empty`
 * initialised to 1 and `full` to 0. `empty` looks like a lock (initial value 1) but is a counting
 * semaphore: the producer takes it, the consumer posts it. At the fork the parent's producer had
 * filled the slot (took `empty`, posted `full`) and is blocked elsewhere; no consumer ever ran, so
 * `empty` was never posted and is not a proven lock. In the child a consumer thread exists (it is
 * created first, so the producer's wait is not the child's only thread) and the main thread
 * produces items 1..K. The producer's first wait on `empty` must block until the consumer took
 * the inherited item 0: the consumer receives 0, 1, ..., K in order, none lost or duplicated, and
 * at the end `empty` is 1 and `full` 0 -- as without the shim. A repair would overwrite item 0.
 * The consumer starts consuming only once it sees the producer blocked in futex(2) on `empty`
 * (/proc/self/task/TID/syscall), so a wrong repair is seen every time, not 3 in 10. Expected
 * report: one lock_orphaned, reason "not_proven_lock", owner the lost producer. */
#define BB_ITEMS 100
struct bb { sem_t empty, full; int slot; int ready[2], release[2]; };
static void *bb_producer_main(void *p) {
    struct bb *b = p;
    pthread_setname_np(pthread_self(), "producer");
    CHECK(sem_wait(&b->empty) == 0);
    b->slot = 0; /* item 0 */
    CHECK(sem_post(&b->full) == 0);
    CHECK(write(b->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(b->release[0], &c, 1) == 1); /* blocked elsewhere: reading its next input */
    return NULL;
}
struct bb_consumer { struct bb *b; pid_t producer; int seen_blocked; int got[BB_ITEMS + 1]; };
static void *bb_consumer_main(void *p) {
    struct bb_consumer *c = p;
    c->seen_blocked = wait_blocked_on(c->producer, &c->b->empty, NULL, 5000);
    for (int i = 0; i <= BB_ITEMS; i++) {
        CHECK(sem_wait(&c->b->full) == 0);
        c->got[i] = c->b->slot;
        CHECK(sem_post(&c->b->empty) == 0);
    }
    return NULL;
}
static int case_bounded_buffer(void) {
    static struct bb b;
    CHECK(sem_init(&b.empty, 0, 1) == 0 && sem_init(&b.full, 0, 0) == 0);
    CHECK(pipe2(b.ready, O_CLOEXEC) == 0 && pipe2(b.release, O_CLOEXEC) == 0);
    pthread_t t;
    char c;
    CHECK(pthread_create(&t, NULL, bb_producer_main, &b) == 0 && read(b.ready[0], &c, 1) == 1);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static struct bb_consumer con;
        con.b = &b;
        con.producer = gettid_now();
        pthread_t ct;
        CHECK(pthread_create(&ct, NULL, bb_consumer_main, &con) == 0); /* exists before the wait */
        for (int i = 1; i <= BB_ITEMS; i++) {
            CHECK(sem_wait(&b.empty) == 0);
            b.slot = i;
            CHECK(sem_post(&b.full) == 0);
        }
        CHECK(pthread_join(ct, NULL) == 0);
        if (con.seen_blocked != 1) _exit(5); /* the producer was never seen blocked on `empty` */
        for (int i = 0; i <= BB_ITEMS; i++)
            if (con.got[i] != i) {
                fprintf(stderr, "bounded_buffer: item %d received as %d\n", i, con.got[i]);
                _exit(3);
            }
        int e = -1, f = -1;
        CHECK(sem_getvalue(&b.empty, &e) == 0 && sem_getvalue(&b.full, &f) == 0);
        if (e != 1 || f != 0) {
            fprintf(stderr, "bounded_buffer: at the end empty=%d full=%d, want 1 and 0\n", e, f);
            _exit(4);
        }
        _exit(0);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(write(b.release[1], "x", 1) == 1 && pthread_join(t, NULL) == 0);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* binary_signal (rule 2c, then 3). Pattern: a binary semaphore (initial value 1) used as a
 * "request in flight" flag: thread A takes it when it sends a request, and whoever completes the
 * request posts it -- here the forking thread, after the fork. In the child, a thread W created
 * there waits for that completion; the main thread posts once, after it has seen W blocked. W
 * must wake only after that post, and the value must end at 0, as without the shim. The
 * semaphore was taken once and never posted (not a proven lock) and the child has two threads
 * when W waits: no repair. Expected report: one lock_orphaned, reason "not_proven_lock", owner the
 * lost taker, tid W. */
struct bs { sem_t s; int ready[2], release[2]; };
static void *bs_taker_main(void *p) {
    struct bs *b = p;
    pthread_setname_np(pthread_self(), "taker");
    CHECK(sem_wait(&b->s) == 0);
    CHECK(write(b->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(b->release[0], &c, 1) == 1);
    return NULL;
}
struct bs_waiter { sem_t *s; _Atomic int *posted; _Atomic int woke; int early; _Atomic pid_t tid; int ready[2]; };
static void *bs_waiter_main(void *p) {
    struct bs_waiter *w = p;
    atomic_store(&w->tid, gettid_now());
    CHECK(write(w->ready[1], "r", 1) == 1);
    CHECK(sem_wait(w->s) == 0);
    w->early = !atomic_load(w->posted); /* woke before the one post that was to wake it */
    atomic_store(&w->woke, 1);
    return NULL;
}
static int case_binary_signal(void) {
    static struct bs b;
    CHECK(sem_init(&b.s, 0, 1) == 0);
    CHECK(pipe2(b.ready, O_CLOEXEC) == 0 && pipe2(b.release, O_CLOEXEC) == 0);
    pthread_t t;
    char c;
    CHECK(pthread_create(&t, NULL, bs_taker_main, &b) == 0 && read(b.ready[0], &c, 1) == 1);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        static _Atomic int posted;
        static struct bs_waiter w;
        w.s = &b.s;
        w.posted = &posted;
        CHECK(pipe2(w.ready, O_CLOEXEC) == 0);
        pthread_t wt;
        CHECK(pthread_create(&wt, NULL, bs_waiter_main, &w) == 0 && read(w.ready[0], &c, 1) == 1);
        int seen = wait_blocked_on(atomic_load(&w.tid), &b.s, &w.woke, 5000);
        atomic_store(&posted, 1);
        CHECK(sem_post(&b.s) == 0); /* the completion */
        CHECK(pthread_join(wt, NULL) == 0);
        int v = -1;
        CHECK(sem_getvalue(&b.s, &v) == 0);
        if (w.early) fprintf(stderr, "binary_signal: the waiter got it before the post: handed over\n");
        else if (seen != 1) fprintf(stderr, "binary_signal: the waiter was never seen blocked\n");
        else if (v != 0) fprintf(stderr, "binary_signal: value %d at the end, want 0\n", v);
        _exit(w.early ? 3 : seen != 1 ? 5 : v != 0 ? 4 : 0);
    }
    CHECK(sem_post(&b.s) == 0); /* in the parent too, the forking thread completes the request */
    int st = wait_child(pid, DONE_MS);
    CHECK(write(b.release[1], "x", 1) == 1 && pthread_join(t, NULL) == 0);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* exited_owner (rule 2a). Pattern: a thread exits while holding a lock (a bug, or a thread
 * cancelled mid-way): the lock was deadlocked in the parent already, before any fork. Then
 * another thread starts and reuses the dead thread's registry slot (the registry hands out freed
 * slots first), and is alive at the fork. The last taker is not a thread lost at the fork, so the
 * child's timed wait must time out as without the shim, and no lock event may name anyone (not
 * the reusing thread). */
static void *exiter_main(void *p) {
    pthread_setname_np(pthread_self(), "exiter");
    CHECK(sem_wait(p) == 0);
    return NULL; /* ends holding it */
}
static int case_exited_owner(void) {
    sem_t s, other;
    CHECK(sem_init(&s, 0, 1) == 0 && sem_init(&other, 0, 1) == 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, exiter_main, &s) == 0 && pthread_join(t, NULL) == 0);
    struct holder h;
    holder_start(&h, &other, "reuser"); /* started after the join: takes the freed slot */
    expect_child_timeout(&s);
    holder_finish(&h);
    return 0;
}

/* posted_free (rule 2b). Pattern: a semaphore initialised to 1 that is really a counter: a
 * permit pool grown at run time (sem_post while permits are free), or a "release" called twice.
 * One thread did all of it: took it, posted it back, posted it again while it was free (value 2),
 * then took both permits, and is lost at the fork. Posted while free, it is not a lock: the
 * child's timed wait must time out as without the shim, and nothing is repaired. */
static void *pool_owner_main(void *p) {
    struct holder *h = p;
    pthread_setname_np(pthread_self(), "pool");
    CHECK(sem_wait(h->sem) == 0 && sem_post(h->sem) == 0); /* a take-then-post ... */
    CHECK(sem_post(h->sem) == 0);                          /* ... and a post while free: 2 */
    CHECK(sem_wait(h->sem) == 0 && sem_wait(h->sem) == 0); /* both permits taken: 0 */
    CHECK(write(h->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(h->release[0], &c, 1) == 1);
    return NULL;
}
static int case_posted_free(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h = {.sem = &s};
    CHECK(pipe2(h.ready, O_CLOEXEC) == 0 && pipe2(h.release, O_CLOEXEC) == 0);
    char c;
    CHECK(pthread_create(&h.thread, NULL, pool_owner_main, &h) == 0 && read(h.ready[0], &c, 1) == 1);
    expect_child_timeout(&s);
    CHECK(write(h.release[1], "x", 1) == 1 && pthread_join(h.thread, NULL) == 0);
    return 0;
}

/* race_unproven (rule 2c, then 3). Pattern: the original race case -- the holder took the lock
 * once -- with the child's racers waiting with a timeout. Taken once and never released is not
 * proof of a lock, and the child has three threads: no repair, both racers time out as without
 * the shim, one lock_orphaned (reason "not_proven_lock") for the two of them. */
struct timed_racer { sem_t *s; pthread_barrier_t *b; int timed_out; };
static void *timed_racer_main(void *p) {
    struct timed_racer *r = p;
    pthread_barrier_wait(r->b);
    r->timed_out = times_out(r->s, 300);
    return NULL;
}
static int case_race_unproven(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, 2);
        struct timed_racer r1 = {&s, &b, 0}, r2 = {&s, &b, 0};
        pthread_t t1, t2;
        CHECK(pthread_create(&t1, NULL, timed_racer_main, &r1) == 0 &&
              pthread_create(&t2, NULL, timed_racer_main, &r2) == 0);
        CHECK(pthread_join(t1, NULL) == 0 && pthread_join(t2, NULL) == 0);
        if (!r1.timed_out || !r2.timed_out) fprintf(stderr, "race_unproven: a racer got the unproven lock\n");
        _exit(r1.timed_out && r2.timed_out ? 0 : 3);
    }
    int st = wait_child(pid, DONE_MS);
    holder_finish(&h);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* proven_multi (rule 2c, first branch). Pattern: a real mutex-like lock (taken and released
 * before by its holder: wait, post, wait) held by a lost thread, in a child that has started a
 * thread of its own (a worker pool, a watchdog) before its main thread needs the lock. The lock is
 * proven, so it is repaired although another thread exists: one lock_repaired, by the main
 * thread. Without the shim the child hangs. */
static int case_proven_multi(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start_proven(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int gate[2];
        CHECK(pipe2(gate, O_CLOEXEC) == 0);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, idle_on_pipe, &gate[0]) == 0); /* the child is multi-threaded */
        int r = sem_wait(&s);
        CHECK(write(gate[1], "x", 1) == 1 && pthread_join(t, NULL) == 0);
        if (r != 0) _exit(2);
        lock_still_works(&s);
        _exit(0);
    }
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    else CHECK(st == -1);
    return 0;
}

/* repair_off_reason (rules 2d and 3). Pattern: FORKSAFE_REPAIR_SEMAPHORES=off (set by check_c.py),
 * for users who want the Python layer alone. The same setup as report_mode: the lost holder's
 * lock is reported as orphaned with reason "semaphore_repair_off", not repaired; the child's
 * timed wait times out both ways. */
static int case_repair_off_reason(void) { return case_report_mode(); }

/* registry_chain (rule 5). Pattern: a long-lived pre-forking chain -- a daemon that re-execs
 * nothing but forks a new generation from each generation, each of which runs a big thread pool
 * (1100 threads here) when it forks. Each child sees its parent's threads as lost; without
 * reclaiming the slots of threads lost at earlier forks, 16 generations of 1100 fill the
 * 16384-slot registry, and the last generation's locks are no longer tracked. In the last
 * generation a holder takes a proven lock and the process forks: the child's sem_wait must be
 * repaired (it hangs without the shim). Each parent releases and joins its pool right after its
 * fork, so at most two pools are alive at once; stacks are 64 KiB. Every wait is bounded: each
 * generation waits for its child a little longer than the child waits for its own. Exit status:
 * 0, or the number of the first generation that saw something wrong (+10). */
#define CHAIN_GENERATIONS 16
#define CHAIN_THREADS 1100
#define CHAIN_STEP_MS 2000
static int chain_last(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start_proven(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(sem_wait(&s) == 0 ? 0 : 2);
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 10 + CHAIN_GENERATIONS;
    return st == -1 ? 0 : 10 + CHAIN_GENERATIONS;
}
static int chain_generation(int g) {
    if (g == CHAIN_GENERATIONS) return chain_last();
    static pthread_t pool[CHAIN_THREADS];
    int release[2];
    CHECK(pipe2(release, O_CLOEXEC) == 0);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 64 * 1024) == 0);
    for (int i = 0; i < CHAIN_THREADS; i++) CHECK(pthread_create(&pool[i], &attr, idle_on_pipe, &release[0]) == 0);
    pthread_attr_destroy(&attr);
    pid_t parent = getpid();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* A chain of 16 processes of 1100 threads each must not outlive a killed test run. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(99);
        close(release[0]);
        close(release[1]);
        _exit(chain_generation(g + 1));
    }
    static char ones[CHAIN_THREADS];
    CHECK(write(release[1], ones, sizeof ones) == (ssize_t)sizeof ones); /* one byte per thread */
    for (int i = 0; i < CHAIN_THREADS; i++) CHECK(pthread_join(pool[i], NULL) == 0);
    close(release[0]);
    close(release[1]);
    int st = wait_child(pid, DONE_MS + (CHAIN_GENERATIONS - g) * CHAIN_STEP_MS);
    if (st >= 0 && WIFEXITED(st)) return WEXITSTATUS(st);
    return 10 + g + 1;
}
static int case_registry_chain(void) {
    int r = chain_generation(0);
    if (r >= 10) fprintf(stderr, "registry_chain: generation %d failed (%d: the last fork's child did not get the lock)\n",
                         r - 10, CHAIN_GENERATIONS);
    else if (r != 0) fprintf(stderr, "registry_chain: a check failed in a generation (see above)\n");
    return r;
}

/* churn_agree (rule 4). Pattern: a server whose threads come and go all the time (a thread per
 * task or per connection, each taking a shared lock, e.g. a stats or logging lock) while the main
 * thread forks workers. Each child takes the lock with a bounded wait; when it is repaired, the
 * repair's owner must be one of the threads the same child's fork report lists as lost (checked by
 * check_c.py over every child). A thread that starts or ends around the fork must not be a repair's
 * owner without being in the list. The churning threads prove the lock (each takes and releases
 * it). The outcome in the child (got it, or timed out) is not judged: only the reports agree.
 * A disagreement needs a thread that starts and takes the lock while the forking thread is
 * between the shim's prepare handler and the copy of the process: chance decides whether a run
 * meets one (fork_window makes it certain). With 8 churners whose threads hold the lock 60 us,
 * most runs do on 2 CPUs (10 in 10 alone, about 5 in 8 next to two busy processes), and about
 * half the children find the lock held and have it repaired. */
#define CHURN_FORKS 50
#define CHURNERS 8
#define CHURN_HOLD_NS 60000L /* each short-lived thread holds the lock 60 us */
static sem_t churn_lock;
static _Atomic int churn_stop;
static void *churn_task(void *p) {
    (void)p;
    if (sem_wait(&churn_lock) != 0) return NULL;
    /* Hold it for a while (busy, as work does): long enough that most forks find it held. */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < CHURN_HOLD_NS);
    sem_post(&churn_lock);
    return NULL;
}
static void *churner_main(void *p) {
    pthread_attr_t *attr = p;
    while (!atomic_load(&churn_stop)) {
        pthread_t t;
        if (pthread_create(&t, attr, churn_task, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}
static int case_churn_agree(void) {
    CHECK(sem_init(&churn_lock, 0, 1) == 0);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 64 * 1024) == 0);
    pthread_t churners[CHURNERS];
    for (int i = 0; i < CHURNERS; i++) CHECK(pthread_create(&churners[i], NULL, churner_main, &attr) == 0);
    int got = 0;
    for (int i = 0; i < CHURN_FORKS; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            struct timespec t = deadline_ms(CLOCK_REALTIME, 100);
            _exit(sem_timedwait(&churn_lock, &t) == 0 ? 0 : 1);
        }
        int st = wait_child(pid, DONE_MS);
        CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) <= 1);
        got += WEXITSTATUS(st) == 0;
    }
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < CHURNERS; i++) CHECK(pthread_join(churners[i], NULL) == 0);
    printf("children_got_lock=%d\n", got);
    return 0;
}

/* fork_window (rule 4, deterministic). Pattern: a thread started while the forking thread is
 * inside fork() -- after the fork handlers ran (the shim's prepare handler lists the threads
 * there) but before the process is copied -- that takes a lock at once: a connection or task
 * thread started by another thread at that moment. churn_agree meets this by chance; here it is
 * made to happen every time: glibc's fork takes the stdio list lock after the fork handlers, and
 * a "flusher" thread blocked in fflush(NULL) on a full pipe holds that lock. A "helper" sees the
 * forking thread blocked in futex(2) inside fork and has a "starter" thread start the "newcomer",
 * which takes a proven lock and stays alive; then the helper drains the pipe so that the fork
 * completes. Every thread stays alive to the end, so the threads lost at the fork are known.
 * The newcomer exists when the process is copied, so it is lost at the fork: the child's wait
 * repairs its lock (single-threaded child, proven lock), and the fork report must list it among
 * the lost threads (check_c.py). Without the shim the child's timed wait times out.
 * A library may instead hold thread creation back while a fork is in progress: then the
 * newcomer is not running within 2 s, the helper lets the fork finish anyway, the newcomer
 * starts after the fork and is not lost, and the child finds the lock free. The case prints
 * newcomer_in_window=0|1 for check_c.py, which expects the one or the other outcome. */
struct fw {
    sem_t lock;
    int data[2];       /* the flusher's pipe, full to the brim */
    FILE *fp;          /* a stream on data[1] with buffered output */
    int ready[2];      /* flusher, newcomer -> main thread, helper: "running" */
    int start[2];      /* helper -> starter: "start the newcomer now" */
    int gate[2];       /* every thread of the case parks here until the end */
    _Atomic pid_t main_tid, flusher_tid;
    _Atomic int forking, flushed, helper_result, in_window;
    pthread_t flusher, helper, starter, newcomer;
};
static void fw_park(struct fw *w) {
    char c;
    while (read(w->gate[0], &c, 1) < 0 && errno == EINTR) {}
}
static void *fw_flusher_main(void *p) {
    struct fw *w = p;
    pthread_setname_np(pthread_self(), "flusher");
    atomic_store(&w->flusher_tid, gettid_now());
    CHECK(write(w->ready[1], "f", 1) == 1);
    fflush(NULL); /* blocks in write(2) on the full pipe, holding stdio's list lock */
    atomic_store(&w->flushed, 1);
    fw_park(w);
    return NULL;
}
static void *fw_newcomer_main(void *p) {
    struct fw *w = p;
    pthread_setname_np(pthread_self(), "newcomer");
    CHECK(sem_wait(&w->lock) == 0);
    CHECK(write(w->ready[1], "n", 1) == 1);
    fw_park(w);
    CHECK(sem_post(&w->lock) == 0);
    return NULL;
}
static void *fw_starter_main(void *p) {
    struct fw *w = p;
    pthread_setname_np(pthread_self(), "starter");
    char c;
    if (read(w->start[0], &c, 1) == 1 && c == 's') CHECK(pthread_create(&w->newcomer, NULL, fw_newcomer_main, w) == 0);
    fw_park(w);
    return NULL;
}
static void *fw_helper_main(void *p) {
    struct fw *w = p;
    pthread_setname_np(pthread_self(), "helper");
    int result = 0;
    for (int i = 0; i < 5000 && !atomic_load(&w->forking); i++) {
        struct timespec ms1 = {0, 1000000};
        nanosleep(&ms1, NULL);
    }
    /* Inside fork, the forking thread blocks in futex(2) only on the stdio list lock. */
    if (!atomic_load(&w->forking) || wait_in_syscall(atomic_load(&w->main_tid), SYS_futex, 0, 0, NULL, 5000) != 1)
        result = 2;
    CHECK(write(w->start[1], result == 0 ? "s" : "-", 1) == 1);
    if (result == 0) {
        struct pollfd pfd = {.fd = w->ready[0], .events = POLLIN};
        char c;
        if (poll(&pfd, 1, 2000) == 1 && read(w->ready[0], &c, 1) == 1 && c == 'n') atomic_store(&w->in_window, 1);
    }
    /* Drain the pipe until the flusher is done: then the fork goes on. */
    CHECK(fcntl(w->data[0], F_SETFL, fcntl(w->data[0], F_GETFL) | O_NONBLOCK) == 0);
    static char sink[65536];
    for (int i = 0; i < 10000 && !atomic_load(&w->flushed); i++) {
        if (read(w->data[0], sink, sizeof sink) > 0) continue;
        struct timespec ms1 = {0, 1000000};
        nanosleep(&ms1, NULL);
    }
    if (!atomic_load(&w->flushed)) result = 3;
    atomic_store(&w->helper_result, result);
    fw_park(w);
    return NULL;
}
static int case_fork_window(void) {
    static struct fw w;
    CHECK(sem_init(&w.lock, 0, 1) == 0);
    CHECK(sem_wait(&w.lock) == 0 && sem_post(&w.lock) == 0); /* a proven lock */
    CHECK(pipe2(w.data, O_CLOEXEC) == 0 && pipe2(w.ready, O_CLOEXEC) == 0 && pipe2(w.start, O_CLOEXEC) == 0 &&
          pipe2(w.gate, O_CLOEXEC) == 0);
    /* Fill the pipe so that the next write(2) to it blocks. */
    int fl = fcntl(w.data[1], F_GETFL);
    CHECK(fcntl(w.data[1], F_SETFL, fl | O_NONBLOCK) == 0);
    static char chunk[65536];
    while (write(w.data[1], chunk, sizeof chunk) > 0) {}
    while (write(w.data[1], chunk, 1) > 0) {}
    CHECK(errno == EAGAIN && fcntl(w.data[1], F_SETFL, fl) == 0);
    CHECK((w.fp = fdopen(w.data[1], "w")) != NULL && setvbuf(w.fp, NULL, _IOFBF, 4096) == 0);
    CHECK(fputs("buffered", w.fp) >= 0);
    fflush(stdout);
    fflush(stderr);
    atomic_store(&w.main_tid, gettid_now());
    char c;
    CHECK(pthread_create(&w.flusher, NULL, fw_flusher_main, &w) == 0 && read(w.ready[0], &c, 1) == 1 && c == 'f');
    CHECK(wait_in_syscall(atomic_load(&w.flusher_tid), SYS_write, (uintptr_t)w.data[1], (uintptr_t)w.data[1] + 1,
                          NULL, 5000) == 1);
    CHECK(pthread_create(&w.starter, NULL, fw_starter_main, &w) == 0);
    CHECK(pthread_create(&w.helper, NULL, fw_helper_main, &w) == 0);
    atomic_store(&w.forking, 1);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct timespec t = deadline_ms(CLOCK_REALTIME, 1000);
        int r = sem_timedwait(&w.lock, &t);
        _exit(r == 0 ? 0 : errno == ETIMEDOUT ? 1 : 2);
    }
    int st = wait_child(pid, DONE_MS);
    CHECK(write(w.gate[1], "xxxx", 4) == 4); /* a byte for each parked thread */
    CHECK(pthread_join(w.helper, NULL) == 0 && pthread_join(w.flusher, NULL) == 0);
    CHECK(pthread_join(w.starter, NULL) == 0); /* it has started the newcomer, if told to */
    int result = atomic_load(&w.helper_result);
    if (result == 0) CHECK(pthread_join(w.newcomer, NULL) == 0);
    if (result != 0) {
        fprintf(stderr, "fork_window: setup failed (%d: 2 the forking thread was not seen blocked in fork, "
                        "3 the flusher did not finish)\n", result);
        return 1;
    }
    int in_window = atomic_load(&w.in_window);
    printf("newcomer_in_window=%d\n", in_window);
    CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == (shim_loaded() || !in_window ? 0 : 1));
    return 0;
}

static const struct { const char *name; int (*run)(void); } cases[] = {
    {"held_wait", case_held_wait},
    {"held_trywait", case_held_trywait},
    {"held_timedwait", case_held_timedwait},
    {"held_clockwait", case_held_clockwait},
    {"pshared", case_pshared},
    {"signal_sem", case_signal_sem},
    {"handoff_sem", case_handoff_sem},
    {"forker_held", case_forker_held},
    {"child_thread_lock", case_child_thread_lock},
    {"nested", case_nested},
    {"race", case_race},
    {"report_mode", case_report_mode},
    {"exec_no_report", case_exec_no_report},
    {"fork_report", case_fork_report},
    {"single_threaded", case_single_threaded},
    {"libc_thread", case_libc_thread},
    {"errno", case_errno},
    {"forkpty", case_forkpty},
    {"fd2_reuse", case_fd2_reuse},
    {"token_trywait", case_token_trywait},
    {"bounded_buffer", case_bounded_buffer},
    {"binary_signal", case_binary_signal},
    {"exited_owner", case_exited_owner},
    {"posted_free", case_posted_free},
    {"race_unproven", case_race_unproven},
    {"proven_multi", case_proven_multi},
    {"repair_off_reason", case_repair_off_reason},
    {"registry_chain", case_registry_chain},
    {"churn_agree", case_churn_agree},
    {"fork_window", case_fork_window},
#ifdef WITH_ATFORK_LIB
    {"atfork_order", case_atfork_order},
#endif
};

int main(int argc, char **argv) {
    size_t n = sizeof cases / sizeof cases[0];
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < n; i++) puts(cases[i].name);
        return 0;
    }
    for (size_t i = 0; argc == 2 && i < n; i++)
        if (strcmp(argv[1], cases[i].name) == 0) return cases[i].run();
    fprintf(stderr, "usage: %s list | CASE\n", argv[0]);
    return 64;
}
