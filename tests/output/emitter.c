// SPDX-License-Identifier: MIT
// A C program that makes the shim write reports, for the output tests (tests/output/check_*.py).
// CHECK, the holder thread, pipe barriers and bounded child waits are tests/lib/forksafe_test.h's.
// Each subcommand is one pattern a real program follows; the drivers decide what must come out.
// Every wait is bounded: children are awaited through a pidfd with a deadline, threads are
// released by closing a pipe, and an alarm ends the whole program if something still hangs
// (a hang is what several tests look for: it must be a failure, not a stuck test).
//
//   emitter fork N            N idle threads (15-byte names "lost-0000000001", ...) alive; fork;
//                             the child _exits at once (its fork report lists N lost threads)
//   emitter repair            a thread "holder" holds a semaphore at the fork; the child takes it
//                             (fork report + lock_repaired)
//   emitter storm C N         N idle threads; fork C children that all wait on one barrier pipe;
//                             once every child waits, the barrier opens and all _exit at once
//   emitter names MAIN NAME.. the main thread is renamed MAIN (raw bytes); one thread per NAME,
//                             the first holds a semaphore; the child takes it (fork report with
//                             every NAME, lock_repaired whose owner is the first)
//   emitter rawfork           the main thread takes and releases a semaphore; 2 idle threads;
//                             syscall(SYS_fork) (no atfork handler runs); the child starts a
//                             spinning thread and _exits while it spins
//   emitter fds               lists /proc/self/fd at start, in a child after its fork report, after
//                             a lock_repaired (skipped without the shim: the lock stays held), and
//                             in the parent at the end
//   emitter daemon MODE [FILE] closes every fd >= 3 first thing (as daemons do), then: plain:
//                             a fork report; reuse: FILE opened (it gets fd 3) and written, then a
//                             fork report; redirect: FILE dup2'ed onto fd 2, then a fork report
//   emitter exitwith END KIND..  one thread per KIND: pipe (read), cond (pthread_cond_wait), futex
//                             (raw FUTEX_WAIT), spin (busy loop), sleep (work loop, 1 ms nanosleep)
//                             named "KIND-worker"; once each is where it should be, END: return,
//                             exit or _exit
//   emitter rename HOW        main thread named "forker"; a holder holds a semaphore; fork; the
//                             child renames itself "renamed" (HOW: pthread or prctl), then takes
//                             the semaphore (the report is written then)
// Lines on stdout (write(2), nothing buffered at _exit): PARENT <pid>, CHILD <pid>, TID <name> <tid>,
// FDS <stage> <fd> <fd> ...  Exit status 0; 1 if a check failed; 2 on bad usage.
#include "forksafe_test.h"

#include <dirent.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/prctl.h>

#define DEADLINE_S 60   /* the alarm: nothing in here takes more than a few seconds */
#define CHILD_MS 30000  /* a child must be done within this */

static void say(const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1) n = sizeof buf - 1;
    for (int off = 0; off < n;) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) continue;
        CHECK(w > 0);
        off += (int)w;
    }
}

/* Waits up to CHILD_MS for `pid` and checks it exited 0. */
static void wait_child_done(pid_t pid) { wait_child_ok(pid, CHILD_MS); }

/* ---- idle threads: each blocks in read on one shared pipe until it is closed ---- */

static int idle_release[2] = {-1, -1}, idle_ready[2] = {-1, -1};
struct idle_arg { char name[16]; };
static pthread_t *idle_threads;
static struct idle_arg *idle_args;
static int idle_count;

__attribute__((noinline)) void *idle_main(void *p) {
    struct idle_arg *a = p;
    if (a->name[0]) CHECK(pthread_setname_np(pthread_self(), a->name) == 0);
    CHECK(write(idle_ready[1], "r", 1) == 1);
    read_byte(idle_release[0]); /* end of file: released */
    return NULL;
}

static void idle_start(int n, const char *const *names) {
    CHECK(pipe2(idle_release, O_CLOEXEC) == 0 && pipe2(idle_ready, O_CLOEXEC) == 0);
    idle_threads = calloc((size_t)n, sizeof *idle_threads);
    struct idle_arg *args = idle_args = calloc((size_t)n, sizeof *args);
    CHECK(idle_threads && args);
    pthread_attr_t attr;
    CHECK(pthread_attr_init(&attr) == 0 && pthread_attr_setstacksize(&attr, 64 * 1024) == 0);
    for (int i = 0; i < n; i++) {
        if (names) snprintf(args[i].name, sizeof args[i].name, "%s", names[i]);
        else snprintf(args[i].name, sizeof args[i].name, "lost-%010d", i + 1);
        CHECK(pthread_create(&idle_threads[i], &attr, idle_main, &args[i]) == 0);
    }
    read_tokens(idle_ready[0], n); /* every thread runs and has its name */
    idle_count = n;
}

static void idle_finish(void) {
    close(idle_release[1]);
    for (int i = 0; i < idle_count; i++) CHECK(pthread_join(idle_threads[i], NULL) == 0);
    free(idle_threads);
    free(idle_args);
    close(idle_release[0]);
    close(idle_ready[0]);
    close(idle_ready[1]);
}

/* In a child: take the lock a lost thread held (the shim hands it over). A wait with no deadline:
 * the shim does not repair a semaphore never seen used as a lock for a wait that ends by itself.
 * Without the shim this would hang; these tests always run with it, and their drivers bound
 * every run. */
static void take_orphaned(sem_t *s) {
    int r;
    do r = sem_wait(s); while (r < 0 && errno == EINTR);
    CHECK(r == 0);
    CHECK(sem_post(s) == 0);
}

/* ---- subcommands ---- */

static int cmd_fork(int n) {
    idle_start(n, NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0); /* the fork report is written here */
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    wait_child_done(pid);
    idle_finish();
    return 0;
}

static int cmd_repair(void) {
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        take_orphaned(h.sem); /* fork report, then lock_repaired */
        _exit(0);
    }
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    wait_child_done(pid);
    holder_finish(&h);
    return 0;
}

static int cmd_storm(int children, int n) {
    idle_start(n, NULL);
    int barrier[2], ready[2];
    CHECK(pipe(barrier) == 0 && pipe(ready) == 0);
    pid_t *pids = calloc((size_t)children, sizeof *pids);
    CHECK(pids);
    for (int i = 0; i < children; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(barrier[1]);
            close(ready[0]);
            CHECK(write(ready[1], "r", 1) == 1);
            _exit(read_byte(barrier[0]) == 0 ? 0 : 3); /* end of file: the barrier opened; the report is written now */
        }
        pids[i] = pid;
    }
    close(ready[1]);
    read_tokens(ready[0], children); /* every child is blocked on the barrier */
    close(barrier[1]); /* all of them wake at once */
    say("PARENT %d\n", (int)getpid());
    for (int i = 0; i < children; i++) wait_child_done(pids[i]);
    for (int i = 0; i < children; i++) say("CHILD %d\n", (int)pids[i]);
    free(pids);
    idle_finish();
    return 0;
}

static int cmd_names(int argc, char **argv) {
    /* argv[0]: the main thread's name; argv[1]: the holder's; the rest idle. */
    CHECK(argc >= 2);
    CHECK(prctl(PR_SET_NAME, argv[0]) == 0);
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, argv[1]);
    if (argc > 2) idle_start(argc - 2, (const char *const *)argv + 2);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        take_orphaned(h.sem);
        _exit(0);
    }
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    wait_child_done(pid);
    holder_finish(&h);
    if (argc > 2) idle_finish();
    return 0;
}

static atomic_int spinning;
static volatile unsigned long spin_sink;
static volatile int stop_flag; /* never set: the spinner runs until the process ends */

__attribute__((noinline)) void *spin_main(void *p) {
    (void)p;
    atomic_store(&spinning, gettid_now());
    while (!stop_flag)
        for (int i = 0; i < 100000; i++) spin_sink += (unsigned long)i;
    return NULL;
}

static int cmd_rawfork(void) {
    /* The main thread has used a lock before (the library knows it: its tid is cached). */
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0 && sem_wait(&s) == 0 && sem_post(&s) == 0);
    idle_start(2, NULL);
    pid_t pid = (pid_t)syscall(SYS_fork);
    CHECK(pid >= 0);
    if (pid == 0) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, spin_main, NULL) == 0);
        double deadline = now_s() + 10;
        while (!atomic_load(&spinning)) CHECK(now_s() < deadline); /* it is in its loop */
        say("CHILD %d\nSPINNER %d\n", (int)getpid(), (int)atomic_load(&spinning));
        _exit(0); /* cuts the spinning thread off: an exit report, from this process */
    }
    say("PARENT %d\n", (int)getpid());
    wait_child_done(pid);
    idle_finish();
    return 0;
}

/* Prints "FDS <stage> fd fd ...": the open descriptors, without the one used to list them. */
static void list_fds(const char *stage) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d);
    int self = dirfd(d);
    char line[4096];
    int n = snprintf(line, sizeof line, "FDS %s", stage);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int fd = atoi(e->d_name);
        if (fd == self) continue;
        char target[512] = "?";
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(path, target, sizeof target - 1);
        if (k >= 0) target[k] = '\0';
        for (char *c = target; *c; c++)
            if (*c == ' ' || *c == '\n') *c = '_';
        if (n < (int)sizeof line - 1) n += snprintf(line + n, sizeof line - (size_t)n, " %d=%s", fd, target);
    }
    closedir(d);
    say("%s\n", line);
}

static void *noop_main(void *p) { return p; }

static int cmd_fds(void) {
    list_fds("start");
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* the holder's pipes are the program's own: close them so the lists show only what the
         * library may have left */
        close(h.ready[0]);
        close(h.ready[1]);
        close(h.release[0]);
        close(h.release[1]);
        pthread_t t; /* starting a thread: the child goes on running, its fork report is written */
        CHECK(pthread_create(&t, NULL, noop_main, NULL) == 0 && pthread_join(t, NULL) == 0);
        list_fds("child-after-fork-report");
        /* lock_repaired; without the shim (the reference run) the lock stays held: skip it */
        if (dlsym(RTLD_DEFAULT, "forksafe_version")) take_orphaned(h.sem);
        list_fds("child-after-lock-repaired");
        _exit(0);
    }
    wait_child_done(pid);
    holder_finish(&h);
    list_fds("parent-end");
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    return 0;
}

static int cmd_daemon(const char *mode, const char *file) {
    /* first thing, as a daemon does: nothing inherited stays open but 0, 1, 2 */
    CHECK(syscall(SYS_close_range, 3, ~0U, 0) == 0);
    if (!strcmp(mode, "reuse")) {
        int fd = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        CHECK(fd == 3);
        CHECK(write(fd, "program data\n", 13) == 13);
    } else if (!strcmp(mode, "redirect")) {
        int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
        CHECK(fd >= 0 && dup2(fd, 2) == 2 && close(fd) == 0);
        CHECK(write(2, "program stderr\n", 15) == 15);
    } else {
        CHECK(!strcmp(mode, "plain"));
    }
    idle_start(1, NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(0);
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    wait_child_done(pid);
    idle_finish();
    if (!strcmp(mode, "reuse")) CHECK(write(3, "program data\n", 13) == 13);
    return 0;
}

/* ---- exitwith ---- */

enum kind { K_PIPE, K_COND, K_FUTEX, K_SPIN, K_SLEEP };
static const char *const kind_names[] = {"pipe", "cond", "futex", "spin", "sleep"};
struct worker {
    enum kind kind;
    atomic_int tid;
    atomic_long rounds;
    pthread_t thread;
};
static int never_fd[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static atomic_int futex_word;

__attribute__((noinline)) void *worker_main(void *p) {
    struct worker *w = p;
    char name[16];
    snprintf(name, sizeof name, "%s-worker", kind_names[w->kind]);
    pthread_setname_np(pthread_self(), name);
    atomic_store(&w->tid, gettid_now());
    switch (w->kind) {
    case K_PIPE: {
        char c;
        while (read(never_fd[0], &c, 1) < 0 && errno == EINTR) {}
        break;
    }
    case K_COND:
        pthread_mutex_lock(&mu);
        while (!stop_flag) pthread_cond_wait(&cv, &mu);
        pthread_mutex_unlock(&mu);
        break;
    case K_FUTEX:
        while (!stop_flag) syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        break;
    case K_SPIN:
        while (!stop_flag) {
            for (int i = 0; i < 100000; i++) spin_sink += (unsigned long)i;
            atomic_fetch_add(&w->rounds, 1);
        }
        break;
    case K_SLEEP:
        while (!stop_flag) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            for (int i = 0; i < 1000; i++) spin_sink += (unsigned long)i; /* the work */
            atomic_fetch_add(&w->rounds, 1);
        }
        break;
    }
    return NULL;
}

static int in_place(struct worker *w) {
    pid_t tid = atomic_load(&w->tid);
    if (!tid) return 0;
    long sc = task_syscall(tid, NULL);
    switch (w->kind) {
    case K_PIPE: return sc == SYS_read;
    case K_COND:
    case K_FUTEX: return sc == SYS_futex;
    case K_SPIN: return atomic_load(&w->rounds) > 2;
    case K_SLEEP: return atomic_load(&w->rounds) > 2 && (sc == -1 || sc == SYS_clock_nanosleep || sc == SYS_nanosleep);
    }
    return 0;
}

static int cmd_exitwith(const char *end, int n, char **kinds) {
    CHECK(pipe2(never_fd, O_CLOEXEC) == 0);
    struct worker *w = calloc((size_t)n, sizeof *w);
    CHECK(w);
    for (int i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; j < 5; j++)
            if (!strcmp(kinds[i], kind_names[j])) k = j;
        if (k < 0) {
            dprintf(2, "emitter: unknown thread kind %s\n", kinds[i]);
            return 2;
        }
        w[i].kind = (enum kind)k;
        CHECK(pthread_create(&w[i].thread, NULL, worker_main, &w[i]) == 0);
    }
    double deadline = now_s() + 10;
    for (int i = 0; i < n; i++) {
        while (!in_place(&w[i])) {
            CHECK(now_s() < deadline);
            sleep_ms(1); /* polling a condition with a deadline */
        }
    }
    say("PARENT %d\n", (int)getpid());
    for (int i = 0; i < n; i++) say("TID %s-worker %d\n", kind_names[w[i].kind], (int)atomic_load(&w[i].tid));
    if (!strcmp(end, "return")) return 0;
    if (!strcmp(end, "exit")) exit(0);
    if (!strcmp(end, "_exit")) _exit(0);
    dprintf(2, "emitter: unknown END %s\n", end);
    return 2;
}

static int cmd_rename(const char *how) {
    CHECK(pthread_setname_np(pthread_self(), "forker") == 0);
    sem_t s;
    CHECK(sem_init(&s, 0, 1) == 0);
    struct holder h;
    holder_start(&h, &s, "holder");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (!strcmp(how, "prctl")) CHECK(prctl(PR_SET_NAME, "renamed") == 0);
        else CHECK(pthread_setname_np(pthread_self(), "renamed") == 0);
        take_orphaned(h.sem); /* the fork report is written now, after the rename */
        _exit(0);
    }
    say("PARENT %d\nCHILD %d\n", (int)getpid(), (int)pid);
    wait_child_done(pid);
    holder_finish(&h);
    return 0;
}

int main(int argc, char **argv) {
    alarm(DEADLINE_S);
    if (argc >= 3 && !strcmp(argv[1], "fork")) return cmd_fork(atoi(argv[2]));
    if (argc == 2 && !strcmp(argv[1], "repair")) return cmd_repair();
    if (argc == 4 && !strcmp(argv[1], "storm")) return cmd_storm(atoi(argv[2]), atoi(argv[3]));
    if (argc >= 4 && !strcmp(argv[1], "names")) return cmd_names(argc - 2, argv + 2);
    if (argc == 2 && !strcmp(argv[1], "rawfork")) return cmd_rawfork();
    if (argc == 2 && !strcmp(argv[1], "fds")) return cmd_fds();
    if (argc >= 3 && !strcmp(argv[1], "daemon")) return cmd_daemon(argv[2], argc > 3 ? argv[3] : NULL);
    if (argc >= 4 && !strcmp(argv[1], "exitwith")) return cmd_exitwith(argv[2], argc - 3, argv + 3);
    if (argc == 3 && !strcmp(argv[1], "rename")) return cmd_rename(argv[2]);
    dprintf(2, "usage: emitter fork N | repair | storm C N | names MAIN HOLDER [NAME..] | rawfork | fds"
               " | daemon plain|reuse|redirect [FILE] | exitwith return|exit|_exit KIND.. | rename pthread|prctl\n");
    return 2;
}
