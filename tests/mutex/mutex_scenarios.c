// SPDX-License-Identifier: MIT
// pthread mutex and rwlock scenarios: `mutex_scenarios CASE` forks in a state a real program
// meets, and judges its own child with a bounded wait; it knows what to expect with and without
// the shim (the driver, check_mutex.py, runs both and checks the JSON reports). Exit status 0:
// the expectation for the side it ran on held.
//   lost_*       a thread holds the lock at the fork and is lost: the child's blocking lock
//                hangs (or times out) without the shim and gets the lock with it
//   forker_*     the forking thread held the lock: glibc's wart (EPERM on unlock, a recursive
//                relock deadlocks) without the shim; it behaves as the child's own lock with it
//   never_*      locks that must never be repaired (process-shared, robust, priority-inheritance,
//                read-held rwlock, a child thread's own, a trylock): the same both ways
#include "forksafe_test.h"

#include <sys/mman.h>

#define HANG_MS 1500
#define DONE_MS 10000

static int shim(void) { return shim_loaded(); }
/* The shim repairs (it is loaded and FORKSAFE_MODE is not report). */
static int repairing(void) {
    const char *mode = getenv("FORKSAFE_MODE");
    return shim() && !(mode && strcmp(mode, "report") == 0);
}

static struct timespec in_ms(clockid_t c, int ms) { return deadline_ms(c, ms); }

/* A thread that takes a lock (how many times, how), says so on a pipe, and holds it until told. */
struct mholder {
    pthread_mutex_t *m;
    pthread_rwlock_t *rw;
    int times, rw_write;
    int ready[2], release[2];
    pthread_t t;
};

static void *mholder_main(void *p) {
    struct mholder *h = p;
    pthread_setname_np(pthread_self(), "holder");
    for (int i = 0; i < h->times; i++) {
        if (h->m) CHECK(pthread_mutex_lock(h->m) == 0);
        else CHECK((h->rw_write ? pthread_rwlock_wrlock(h->rw) : pthread_rwlock_rdlock(h->rw)) == 0);
    }
    CHECK(write(h->ready[1], "r", 1) == 1);
    char c;
    CHECK(read(h->release[0], &c, 1) == 1);
    for (int i = 0; i < h->times; i++) {
        if (h->m) pthread_mutex_unlock(h->m);
        else pthread_rwlock_unlock(h->rw);
    }
    return NULL;
}

static void hold(struct mholder *h) {
    CHECK(pipe(h->ready) == 0 && pipe(h->release) == 0);
    CHECK(pthread_create(&h->t, NULL, mholder_main, h) == 0);
    char c;
    CHECK(read(h->ready[0], &c, 1) == 1);
}

static void let_go(struct mholder *h) {
    CHECK(write(h->release[1], "x", 1) == 1);
    CHECK(pthread_join(h->t, NULL) == 0);
}

static pthread_mutex_t *new_mutex(int type, int pshared, int robust, int protocol) {
    pthread_mutex_t *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE,
                              (pshared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    pthread_mutexattr_t a;
    CHECK(pthread_mutexattr_init(&a) == 0);
    CHECK(pthread_mutexattr_settype(&a, type) == 0);
    if (pshared) CHECK(pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) == 0);
    if (robust) CHECK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) == 0);
    if (protocol) CHECK(pthread_mutexattr_setprotocol(&a, protocol) == 0);
    CHECK(pthread_mutex_init(m, &a) == 0);
    return m;
}

/* ---- a lost thread holds it ---- */

enum how { LOCK, TIMED, CLOCK };

static int take(pthread_mutex_t *m, enum how how) {
    struct timespec t;
    switch (how) {
    case LOCK: return pthread_mutex_lock(m);
    case TIMED: t = in_ms(CLOCK_REALTIME, HANG_MS / 2); return pthread_mutex_timedlock(m, &t);
    case CLOCK: t = in_ms(CLOCK_MONOTONIC, HANG_MS / 2); return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &t);
    }
    return -1;
}

/* Another thread of the child can take it after the child's unlock: the lock is free again. */
static void *try_once(void *p) { return (void *)(long)pthread_mutex_trylock(p); }
static int free_again(pthread_mutex_t *m) {
    pthread_t t;
    void *r;
    CHECK(pthread_create(&t, NULL, try_once, m) == 0 && pthread_join(t, &r) == 0);
    if ((long)r == 0) pthread_mutex_unlock(m); /* best effort: the other thread ended */
    return (long)r == 0;
}

static int lost(int type, int times, enum how how) {
    pthread_mutex_t *m = new_mutex(type, 0, 0, 0);
    struct mholder h = {.m = m, .times = times};
    hold(&h);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int r = take(m, how);
        if (r != 0) _exit(2);                             /* timed out: not repaired */
        if (pthread_mutex_unlock(m) != 0) _exit(3);       /* the child's thread owns it */
        if (!free_again(m)) _exit(4);                     /* count right: free after one unlock */
        _exit(0);
    }
    int st = wait_child(pid, repairing() ? DONE_MS : HANG_MS);
    let_go(&h);
    if (repairing()) return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
    return how == LOCK ? (st == -1 ? 0 : 1) : (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 2 ? 0 : 1);
}

/* ---- the forking thread held it ---- */

static int forker(int type, int op, int with_thread) {
    pthread_mutex_t *m = new_mutex(type, 0, 0, 0);
    struct mholder other = {.m = new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, 0), .times = 1};
    if (with_thread) hold(&other);
    CHECK(pthread_mutex_lock(m) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int r = -1;
        if (op == 0) r = pthread_mutex_unlock(m);                      /* error-checking: EPERM? */
        if (op == 1) r = pthread_mutex_lock(m) == 0 && pthread_mutex_unlock(m) == 0 ? 0 : 1; /* recursive relock */
        if (op == 2) r = pthread_mutex_trylock(m) == 0 && pthread_mutex_unlock(m) == 0 ? 0 : 1;
        if (r == 0 && op != 0 && pthread_mutex_unlock(m) != 0) r = 5;  /* and the first hold ends */
        _exit(r == 0 ? 0 : 2);
    }
    int st = wait_child(pid, shim() ? DONE_MS : HANG_MS);
    CHECK(pthread_mutex_unlock(m) == 0);
    if (with_thread) let_go(&other);
    int ok_child = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (shim()) return ok_child ? 0 : 1;
    return ok_child ? 1 : 0; /* without the shim glibc's wart shows: EPERM, EBUSY or a hang */
}

/* ---- never repaired ---- */

/* Never repaired: the child's bounded wait times out, as without the shim -- or, for a priority-
 * inheritance mutex whose owner the kernel cannot find in the child, glibc aborts the child
 * ("The futex facility returned an unexpected error code"), also as without the shim. */
static int never(pthread_mutex_t *m) {
    struct mholder h = {.m = m, .times = 1};
    hold(&h);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct timespec t = in_ms(CLOCK_REALTIME, 300);
        int r = pthread_mutex_timedlock(m, &t);
        if (r != ETIMEDOUT) fprintf(stderr, "never: timedlock returned %d (%s)\n", r, strerror(r));
        _exit(r == ETIMEDOUT ? 0 : 3);
    }
    int st = wait_child(pid, DONE_MS);
    let_go(&h);
    if (st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT) return 0;
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int never_trylock(void) {
    pthread_mutex_t *m = new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, 0);
    struct mholder h = {.m = m, .times = 1};
    hold(&h);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(pthread_mutex_trylock(m) == EBUSY ? 0 : 3);
    int st = wait_child(pid, DONE_MS);
    let_go(&h);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static void *lock_and_leave(void *p) {
    pthread_mutex_lock(p);
    return NULL;
}

static int never_child_thread(void) {
    pthread_mutex_t *m = new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, 0);
    struct mholder h = {.m = new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, 0), .times = 1};
    hold(&h);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, lock_and_leave, m) == 0 && pthread_join(t, NULL) == 0);
        struct timespec ts = in_ms(CLOCK_REALTIME, 300);
        _exit(pthread_mutex_timedlock(m, &ts) == ETIMEDOUT ? 0 : 3);
    }
    int st = wait_child(pid, DONE_MS);
    let_go(&h);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ---- rwlocks ---- */

static int rwlock_lost(int held_write, int want_write) {
    pthread_rwlock_t *rw = mmap(NULL, sizeof *rw, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(rw != MAP_FAILED && pthread_rwlock_init(rw, NULL) == 0);
    struct mholder h = {.rw = rw, .times = 1, .rw_write = held_write};
    hold(&h);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct timespec t = in_ms(CLOCK_REALTIME, HANG_MS / 2);
        int r = want_write ? pthread_rwlock_timedwrlock(rw, &t) : pthread_rwlock_timedrdlock(rw, &t);
        if (r != 0) _exit(2);
        if (pthread_rwlock_unlock(rw) != 0) _exit(3);
        if (pthread_rwlock_trywrlock(rw) != 0) _exit(4); /* free again */
        _exit(0);
    }
    int st = wait_child(pid, DONE_MS);
    let_go(&h);
    int status = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (!held_write) return status == 2 ? 0 : 1;          /* read-held: never repaired */
    return status == (shim() ? 0 : 2) ? 0 : 1;
}

/* A process-shared mutex is not the child's copy. The parent's forking thread takes it after the
 * fork -- in the shared memory its owner is then the tid the child's thread had in the parent --
 * and the child tries it: the child must leave it the parent's, whose unlock (error-checking:
 * glibc verifies the owner) then succeeds. (uWSGI's master and workers share such mutexes.) */
static int forker_pshared_parent(void) {
    pthread_mutex_t *m = new_mutex(PTHREAD_MUTEX_ERRORCHECK, 1, 0, 0);
    struct mholder h = {.m = new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, 0), .times = 1};
    int go[2], done[2];
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    hold(&h); /* a second thread: the child is one the shim watches */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        close(done[0]);
        if (read(go[0], &c, 1) != 1) _exit(4); /* the parent holds it now */
        int r = pthread_mutex_trylock(m);
        _exit(r == EBUSY ? 0 : 3);
    }
    close(go[0]);
    close(done[1]);
    CHECK(pthread_mutex_lock(m) == 0);
    CHECK(write(go[1], "g", 1) == 1);
    char c;
    ssize_t n = read(done[0], &c, 1); /* end of file: the child is gone */
    int st = wait_child(pid, DONE_MS);
    int unlocked = pthread_mutex_unlock(m);
    if (unlocked != 0) fprintf(stderr, "forker_pshared_parent: the parent's unlock returned %d (%s)\n", unlocked, strerror(unlocked));
    let_go(&h);
    return n == 0 && unlocked == 0 && st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int single_threaded_forker(void) {
    /* A process that never had a second thread: glibc's wart hurts it too. */
    return forker(PTHREAD_MUTEX_ERRORCHECK, 0, 0);
}

static const struct { const char *name; int (*run)(void); } cases[] = {
    {"lost_normal", NULL}, {"lost_errorcheck", NULL}, {"lost_recursive", NULL}, {"lost_adaptive", NULL},
    {"lost_timedlock", NULL}, {"lost_clocklock", NULL},
    {"forker_errorcheck_unlock", NULL}, {"forker_recursive_relock", NULL}, {"forker_recursive_trylock", NULL},
    {"forker_single_threaded", single_threaded_forker}, {"forker_pshared_parent", forker_pshared_parent},
    {"never_trylock", never_trylock}, {"never_pshared", NULL}, {"never_robust", NULL}, {"never_prio_inherit", NULL},
    {"never_child_thread", never_child_thread},
    {"rwlock_write_lost", NULL}, {"rwlock_read_wanted_write_lost", NULL}, {"never_rwlock_read_held", NULL},
    {"report_mode", NULL},
};

static int run(const char *name) {
    if (!strcmp(name, "lost_normal")) return lost(PTHREAD_MUTEX_NORMAL, 1, LOCK);
    if (!strcmp(name, "lost_errorcheck")) return lost(PTHREAD_MUTEX_ERRORCHECK, 1, LOCK);
    if (!strcmp(name, "lost_recursive")) return lost(PTHREAD_MUTEX_RECURSIVE, 3, LOCK);
    if (!strcmp(name, "lost_adaptive")) return lost(PTHREAD_MUTEX_ADAPTIVE_NP, 1, LOCK);
    if (!strcmp(name, "lost_timedlock")) return lost(PTHREAD_MUTEX_NORMAL, 1, TIMED);
    if (!strcmp(name, "lost_clocklock")) return lost(PTHREAD_MUTEX_NORMAL, 1, CLOCK);
    if (!strcmp(name, "forker_errorcheck_unlock")) return forker(PTHREAD_MUTEX_ERRORCHECK, 0, 1);
    if (!strcmp(name, "forker_recursive_relock")) return forker(PTHREAD_MUTEX_RECURSIVE, 1, 1);
    if (!strcmp(name, "forker_recursive_trylock")) return forker(PTHREAD_MUTEX_RECURSIVE, 2, 1);
    if (!strcmp(name, "never_pshared")) return never(new_mutex(PTHREAD_MUTEX_NORMAL, 1, 0, 0));
    if (!strcmp(name, "never_robust")) return never(new_mutex(PTHREAD_MUTEX_NORMAL, 0, 1, 0));
    if (!strcmp(name, "never_prio_inherit")) return never(new_mutex(PTHREAD_MUTEX_NORMAL, 0, 0, PTHREAD_PRIO_INHERIT));
    if (!strcmp(name, "rwlock_write_lost")) return rwlock_lost(1, 1);
    if (!strcmp(name, "rwlock_read_wanted_write_lost")) return rwlock_lost(1, 0);
    if (!strcmp(name, "never_rwlock_read_held")) return rwlock_lost(0, 1);
    if (!strcmp(name, "report_mode")) return lost(PTHREAD_MUTEX_NORMAL, 1, TIMED); /* run with FORKSAFE_MODE=report */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(name, cases[i].name) && cases[i].run) return cases[i].run();
    fprintf(stderr, "unknown case %s\n", name);
    return 64;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) puts(cases[i].name);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s list | CASE\n", argv[0]);
        return 64;
    }
    return run(argv[1]);
}
