// SPDX-License-Identifier: MIT
// C scenarios: one case per command-line name (`scenarios CASE`, or `scenarios list`), each a
// real fork in a process whose other thread holds a semaphore used as a lock. A case judges its
// own child with a bounded wait and knows what to expect with and without the shim loaded, so
// the same case run both ways shows the hang and the repair. Reports are checked by the driver
// (tests/check_c.py) from the log file.
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <pty.h>
#include <sys/mman.h>

#define HANG_MS 1500   /* without the shim a blocked child is declared hung after this */
#define DONE_MS 10000  /* with the shim a child must finish within this */

void *holder_main(void *p) {
    struct holder *h = p;
    if (h->name) pthread_setname_np(pthread_self(), h->name);
    h->tid = (pid_t)syscall(SYS_gettid);
    CHECK(sem_wait(h->sem) == 0);
    CHECK(write(h->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(h->release[0], &c, 1) == 1);
    CHECK(sem_post(h->sem) == 0);
    return NULL;
}

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

/* A lost thread held the lock: the child gets it with the shim; without, it hangs (sem_wait)
 * or fails (the others). */
static int held_lock(enum how how) {
    sem_t s;
    struct holder h;
    CHECK(sem_init(&s, 0, 1) == 0);
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (acquire(&s, how) != 0) _exit(2);
        lock_still_works(&s);
        _exit(0);
    }
    int st = wait_child(pid, shim_loaded() ? DONE_MS : HANG_MS);
    holder_finish(&h);
    if (shim_loaded()) CHECK(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
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
    if (pid == 0) _exit(times_out(s, 300) ? 0 : 3);
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
 * it in the end. */
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
    holder_start(&h, &s, "holder");
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

/* FORKSAFE_MODE=report: the orphaned lock is reported, not repaired. */
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

/* The library of tests/c/atfork_lib.c registered its handlers from its constructor, before ours.
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
